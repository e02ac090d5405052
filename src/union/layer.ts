// The layers of one mount and what a lookup resolves a merged path to.

export interface Layer {
  index: number; // 0 is the topmost layer
  root: string; // "@FD": the layer's tree, reached through its open root fd
  displayPath: string; // the path the user gave, resolved, for logs
  isUpper: boolean;
  fsIndex: number; // distinct filesystems numbered in layer order
  rootFd: number; // open on the layer root, for open_by_handle_at
  uuid: Buffer; // the filesystem's UUID, zeros when it reports none
}

// One real directory that takes part in a merged directory.
export interface DirPart {
  layer: number;
  realPath: string;
  // The directory's opaque xattr is 'x': it may hold xattr whiteouts.
  xwhiteouts: boolean;
}

// A merged path resolved to the topmost real object with its name.
export interface Node {
  layer: number;
  realPath: string;
  type: number; // S_IFMT bits of the real object
  // Directories: every real directory merged into this one, topmost first.
  // The list stops at an opaque directory.
  parts?: DirPart[];
  // Inode number reported to the kernel (see inodeNumber in inode.ts).
  ino: bigint;
}
