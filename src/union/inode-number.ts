// Inode numbers unique within a mount whose layers sit on several
// filesystems: the layer's filesystem index goes in the top bits.
export function withFsIndex(ino: bigint, fsIndex: number): bigint {
  if (fsIndex === 0) return ino;
  // TODO: inode numbers that already use the top 6 bits can collide here.
  return BigInt.asIntN(64, ino ^ (BigInt(fsIndex) << 58n));
}
