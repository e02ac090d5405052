// Origin records in the kernel's format: <prefix>origin on a copied-up
// object contains a file handle of the lower object it came from, as struct
// ovl_fb: version 0, magic 0xfb, total length, flags, handle type, the
// lower filesystem's UUID, then the handle bytes. The kernel reads records
// written here and the reverse, so inode numbers stay stable across
// copy-up either way.
import { host } from '../host/native';
import { newStatBuffer, ST_INO, ST_MODE, ST_NLINK } from '../host/stat';
import type { Layer } from './layer';
import { withFsIndex } from './inode-number';

const MAGIC = 0xfb;
const HEADER = 21;

// Returns the record for lowerPath, or undefined when its filesystem cannot
// make file handles (the kernel then stores none either).
export function encodeOrigin(lowerPath: string, layer: Layer): Buffer | undefined {
  let fh: { type: number; handle: Buffer };
  try {
    fh = host.nameToHandle(lowerPath);
  } catch {
    return undefined;
  }
  const header = Buffer.alloc(HEADER);
  header[0] = 0;
  header[1] = MAGIC;
  header[2] = HEADER + fh.handle.length;
  header[3] = 0; // little-endian fid, origin in a lower layer
  header[4] = fh.type;
  layer.uuid.copy(header, 5, 0, 16);
  return Buffer.concat([header, fh.handle]);
}

// Returns the overlay inode number of the origin a record names, or
// undefined when no lower layer can open it. As in the kernel with index
// off, a non-directory whose origin has other links keeps its own upper
// number: the copy-up broke the link, so sharing the number would be wrong.
export function decodeOrigin(record: Buffer, layers: Layer[]): bigint | undefined {
  if (record.length < HEADER || record[1] !== MAGIC || record[2] > record.length) return undefined;
  const type = record[4];
  const uuid = record.subarray(5, HEADER);
  const handle = record.subarray(HEADER, record[2]);

  for (const layer of layers) {
    if (layer.isUpper || !layer.uuid.equals(uuid)) continue;
    let fd: number;
    try {
      fd = host.openByHandle(layer.rootFd, type, handle, host.O_PATH);
    } catch {
      continue; // stale handle, or another filesystem with the same UUID
    }
    try {
      const st = newStatBuffer();
      host.fstat(fd, st);
      const isDirectory = (Number(st[ST_MODE]) & 0o170000) === 0o040000;
      if (!isDirectory && st[ST_NLINK] > 1n) return undefined;
      return withFsIndex(BigInt.asUintN(64, st[ST_INO]), layer.fsIndex);
    } finally {
      host.close(fd);
    }
  }
  return undefined;
}
