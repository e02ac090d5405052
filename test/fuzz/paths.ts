// Byte-exact path names for the differential runner. Layer names may hold
// newlines and bytes that are not UTF-8, so paths travel as Buffers and are
// stored in JSON in an escaped form: printable ASCII as is, a backslash as
// `\\`, and every other byte as `\xNN`.

export type EncodedPath = string;

export function encodeName(bytes: Buffer): EncodedPath {
  let out = '';
  for (const b of bytes) {
    if (b === 0x5c) out += '\\\\';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

export function decodeName(encoded: EncodedPath): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    const ch = encoded.charCodeAt(i);
    if (ch !== 0x5c) {
      bytes.push(ch);
      continue;
    }
    const next = encoded[i + 1];
    if (next === '\\') {
      bytes.push(0x5c);
      i += 1;
    } else if (next === 'x') {
      bytes.push(parseInt(encoded.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      throw new Error(`Invalid escape in encoded path '${encoded}' at offset ${i}`);
    }
  }
  return Buffer.from(bytes);
}

// Joins an absolute root with an encoded relative path ('' is the root).
export function fullPath(root: string, rel: EncodedPath): Buffer {
  if (rel === '') return Buffer.from(root);
  return Buffer.concat([Buffer.from(`${root}/`), decodeName(rel)]);
}

export function parentOf(rel: EncodedPath): EncodedPath {
  const slash = rel.lastIndexOf('/');
  return slash === -1 ? '' : rel.slice(0, slash);
}

export function baseOf(rel: EncodedPath): EncodedPath {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

export function joinPath(dir: EncodedPath, name: EncodedPath): EncodedPath {
  return dir === '' ? name : `${dir}/${name}`;
}

// True when rel is dir itself or lies below it.
export function isWithin(rel: EncodedPath, dir: EncodedPath): boolean {
  return dir === '' || rel === dir || rel.startsWith(`${dir}/`);
}

// Octal escapes for `printf %b` in sh, which takes any byte, newlines too.
export function shellOctal(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) out += `\\0${b.toString(8).padStart(3, '0')}`;
  return out;
}

// Undoes getfattr's quoting of file names: `\ooo` octal escapes.
export function unquoteGetfattr(raw: Buffer): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else {
      bytes.push(raw[i]);
    }
  }
  return Buffer.from(bytes);
}
