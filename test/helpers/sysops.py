# Runs a list of system calls and prints each one's result as JSON, so
# tests can reach calls that Node's fs lacks (xattrs, mknod, sockets,
# renameat2, statvfs, d_ino) and run steps as another user through setpriv.
#
# Input (argv[1]): a JSON list of steps, each [op, arg, ...]. A path is a
# string or {"hex": "..."} for names that are not UTF-8. Output: a JSON list
# with {"r": "ok", "v": value} or {"r": "ENOENT"} (the errno name) per step.
import ctypes
import errno
import hashlib
import json
import os
import socket
import stat
import sys

fds = {}
libc = ctypes.CDLL(None, use_errno=True)


def to_path(p):
    if isinstance(p, dict):
        return bytes.fromhex(p["hex"])
    return p.encode("utf-8", "surrogateescape")


def stat_dict(st):
    return {
        "mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size,
        "ino": st.st_ino, "dev": st.st_dev, "nlink": st.st_nlink, "blocks": st.st_blocks,
        "rdev": st.st_rdev, "atime_ns": str(st.st_atime_ns), "mtime_ns": str(st.st_mtime_ns),
        "ctime_ns": str(st.st_ctime_ns),
    }


def type_name(mode):
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "unknown"


def xattrs_of(path):
    out = {}
    for name in sorted(os.listxattr(path, follow_symlinks=False)):
        out[name] = os.getxattr(path, name, follow_symlinks=False).hex()
    return out


def describe(root, rel):
    full = os.path.join(root, rel) if rel else root
    st = os.lstat(full)
    kind = type_name(st.st_mode)
    d = {
        "path": rel.hex(), "type": kind, "mode": oct(st.st_mode & 0o7777), "uid": st.st_uid,
        "gid": st.st_gid, "mtime_ns": str(st.st_mtime_ns), "ctime_ns": str(st.st_ctime_ns),
        "ino": st.st_ino, "xattrs": xattrs_of(full),
    }
    if kind == "file":
        d["size"] = st.st_size
        d["nlink"] = st.st_nlink
        with open(full, "rb") as f:
            d["sha256"] = hashlib.sha256(f.read()).hexdigest()
    elif kind == "symlink":
        d["target"] = os.readlink(full).hex()
    elif kind in ("chr", "blk"):
        d["rdev"] = st.st_rdev
    return d


def tree(root):
    root = to_path(root)
    out = [describe(root, b"")]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            out.append(describe(root, rel))
    return out


def fix_times(root):
    # Distinct but reproducible times per path, so copies of a stack match.
    root = to_path(root)

    def fix(full):
        rel = os.path.relpath(full, root)
        h = int.from_bytes(hashlib.sha256(rel).digest()[:8], "big")
        atime = 1000000000 * 10**9 + h % 10**14
        mtime = 1100000000 * 10**9 + (h >> 20) % 10**14
        os.utime(full, ns=(atime, mtime), follow_symlinks=False)

    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.isdir(full) or os.path.islink(full):
                fix(full)
        if dirpath != root:
            fix(dirpath)
    fix(root)


def renameat2(src, dst, flags):
    AT_FDCWD = -100
    if libc.renameat2(AT_FDCWD, to_path(src), AT_FDCWD, to_path(dst), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def scandir(path):
    out = []
    with os.scandir(to_path(path)) as it:
        for entry in it:
            if entry.is_symlink():
                kind = "symlink"
            elif entry.is_dir(follow_symlinks=False):
                kind = "dir"
            elif entry.is_file(follow_symlinks=False):
                kind = "file"
            else:
                kind = type_name(entry.stat(follow_symlinks=False).st_mode)
            out.append([entry.name.hex(), kind, entry.inode()])
    return sorted(out)


def fd_of(name):
    if name not in fds:
        raise OSError(errno.EBADF, "no open file named " + name)
    return fds[name]


def open_flags(names):
    flags = 0
    for name in names:
        flags |= getattr(os, name)
    return flags


def run(step):
    op, args = step[0], step[1:]
    if op == "stat":
        return stat_dict(os.stat(to_path(args[0])))
    if op == "lstat":
        return stat_dict(os.lstat(to_path(args[0])))
    if op == "access":
        modes = {"F": os.F_OK, "R": os.R_OK, "W": os.W_OK, "X": os.X_OK}
        return os.access(to_path(args[0]), modes[args[1]])
    if op == "unlink":
        return os.unlink(to_path(args[0]))
    if op == "rmdir":
        return os.rmdir(to_path(args[0]))
    if op == "mkdir":
        return os.mkdir(to_path(args[0]), args[1] if len(args) > 1 else 0o777)
    if op == "rename":
        return os.rename(to_path(args[0]), to_path(args[1]))
    if op == "renameat2":
        return renameat2(args[0], args[1], args[2])
    if op == "link":
        return os.link(to_path(args[0]), to_path(args[1]), follow_symlinks=False)
    if op == "symlink":
        return os.symlink(to_path(args[0]), to_path(args[1]))
    if op == "mknod":
        return os.mknod(to_path(args[0]), args[1], os.makedev(args[2], args[3]))
    if op == "mkfifo":
        return os.mkfifo(to_path(args[0]), args[1])
    if op == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(to_path(args[0]))
        s.close()
        return None

    if op == "open":
        fd = os.open(to_path(args[0]), open_flags(args[1]), args[2] if len(args) > 2 else 0o666)
        fds[args[3] if len(args) > 3 else "fd"] = fd
        return None
    if op == "write":
        return os.write(fd_of(args[0]), args[1].encode())
    if op == "pwrite":
        return os.pwrite(fd_of(args[0]), args[1].encode(), args[2])
    if op == "read":
        return os.pread(fd_of(args[0]), args[1], args[2]).decode("latin-1")
    if op == "fstat":
        return stat_dict(os.fstat(fd_of(args[0])))
    if op == "ftruncate":
        return os.ftruncate(fd_of(args[0]), args[1])
    if op == "lseek":
        return os.lseek(fd_of(args[0]), args[1], getattr(os, args[2]))
    if op == "fallocate":
        return os.posix_fallocate(fd_of(args[0]), args[1], args[2])
    if op == "close":
        fd = fd_of(args[0])
        del fds[args[0]]
        return os.close(fd)

    if op == "readfile":
        with open(to_path(args[0]), "rb") as f:
            return f.read().decode("latin-1")
    if op == "writefile":
        with open(to_path(args[0]), "wb") as f:
            f.write(args[1].encode())
        return None
    if op == "truncate":
        return os.truncate(to_path(args[0]), args[1])
    if op == "chmod":
        return os.chmod(to_path(args[0]), args[1])
    if op == "chown":
        return os.chown(to_path(args[0]), args[1], args[2], follow_symlinks=False)
    if op == "utime":
        return os.utime(to_path(args[0]), ns=(int(args[1]), int(args[2])), follow_symlinks=False)

    if op == "getxattr":
        return os.getxattr(to_path(args[0]), args[1], follow_symlinks=False).hex()
    if op == "setxattr":
        flags = args[3] if len(args) > 3 else 0
        return os.setxattr(to_path(args[0]), args[1], bytes.fromhex(args[2]), flags,
                           follow_symlinks=False)
    if op == "listxattr":
        return sorted(os.listxattr(to_path(args[0]), follow_symlinks=False))
    if op == "removexattr":
        return os.removexattr(to_path(args[0]), args[1], follow_symlinks=False)

    if op == "statvfs":
        st = os.statvfs(to_path(args[0]))
        return {"namemax": st.f_namemax, "bsize": st.f_bsize, "flag": st.f_flag}
    if op == "scandir":
        return scandir(args[0])
    if op == "listdir":
        return sorted(n.hex() for n in os.listdir(to_path(args[0])))
    if op == "fixtimes":
        return fix_times(args[0])
    if op == "tree":
        return tree(args[0])
    raise ValueError("unknown op " + op)


def main():
    results = []
    for step in json.loads(sys.argv[1]):
        try:
            results.append({"r": "ok", "v": run(step)})
        except OSError as e:
            results.append({"r": errno.errorcode.get(e.errno, str(e.errno))})
    json.dump(results, sys.stdout)


main()
