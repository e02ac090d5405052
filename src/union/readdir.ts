// readdir (kernel fs/overlayfs/readdir.c): a merged directory lists the
// upper's names, then each lower's, every name once; whiteouts and the names
// they hide are dropped. libfuse keeps the listing of an open directory, so
// a listing stays stable while entries come and go.
import { host } from '../host/native';
import { isWhiteoutStat, newStatBuffer } from '../host/stat';
import type { Node } from './layer';
import { withFsIndex } from './inode-number';
import { lookup } from './lookup';
import { childOf, type Overlay } from './overlay';
import { isXattrWhiteout, WH_OPAQUE, WH_PREFIX } from './whiteout';

const DT_CHR = 2;
const DT_REG = 8;
const DT_UNKNOWN = 0;

export interface Listing {
  names: string[];
  // (ino, mode) pairs, one per name, for d_ino and d_type.
  entries: BigInt64Array;
}

export function readdirMerged(ov: Overlay, path: string, node: Node): Listing {
  const parts = node.parts ?? [];
  const names: string[] = [];
  const types: number[] = [];
  const inos: bigint[] = [];
  const seen = new Set<string>();
  const st = newStatBuffer();
  const merged = parts.length > 1;

  for (const part of parts) {
    const layer = ov.layers[part.layer];
    const markers = ov.whiteoutMarkers && !layer.isUpper;
    const listing = host.readdir(part.realPath);
    const hiddenHere: string[] = [];

    for (let i = 0; i < listing.names.length; i++) {
      const name = listing.names[i];
      if (seen.has(name)) continue;
      const type = listing.types[i];

      if (markers && name.startsWith(WH_PREFIX)) {
        if (name !== WH_OPAQUE) hiddenHere.push(name.slice(WH_PREFIX.length));
        continue;
      }
      const realPath = childOf(part.realPath, name);
      if (type === DT_CHR || type === DT_UNKNOWN || (part.xwhiteouts && type === DT_REG)) {
        host.lstat(realPath, st);
        if (isWhiteoutStat(st) || (part.xwhiteouts && isXattrWhiteout(ov, realPath, st))) {
          seen.add(name);
          continue;
        }
      }

      seen.add(name);
      names.push(name);
      types.push(type);
      inos.push(merged ? -1n : withFsIndex(listing.inos[i], layer.fsIndex));
    }
    // An OCI marker hides the name only in the layers below its own.
    for (const name of hiddenHere) seen.add(name);
  }

  const entries = new BigInt64Array(names.length * 2);
  for (let i = 0; i < names.length; i++) {
    // In a merged directory d_ino comes from a lookup, so that it matches
    // st_ino for copied-up entries, which report their origin's number.
    const ino = inos[i] === -1n ? entryIno(ov, childOf(path, names[i])) : inos[i];
    entries[2 * i] = ino;
    entries[2 * i + 1] = BigInt(types[i] << 12);
  }
  return { names, entries };
}

function entryIno(ov: Overlay, path: string): bigint {
  const node = lookup(ov, path);
  return node === null ? 0n : node.ino;
}
