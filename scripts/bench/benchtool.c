// Workloads for scripts/bench/run.js whose cost a shell loop would hide
// behind process start-up: creating many files, and loops of single calls.
// Loops print nanoseconds per call on stdout.
//
//   benchtool create DIR COUNT SIZE    mkdir DIR, then COUNT files of SIZE bytes
//   benchtool stat FILE COUNT          stat(2) COUNT times
//   benchtool statsync FILE COUNT      statx(2) with AT_STATX_FORCE_SYNC
//   benchtool open FILE COUNT          open(2) O_RDONLY and close(2) COUNT times
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static int fail(const char *what, const char *path) {
  fprintf(stderr, "benchtool: %s %s: %s\n", what, path, strerror(errno));
  return 1;
}

static int create_files(const char *dir, long count, long size) {
  char path[4096];
  char *buf = calloc(1, size > 0 ? (size_t) size : 1);
  if (buf == NULL) return fail("calloc", dir);
  memset(buf, 'x', (size_t) size);
  if (mkdir(dir, 0755) != 0) return fail("mkdir", dir);
  for (long i = 0; i < count; i++) {
    snprintf(path, sizeof path, "%s/f%06ld", dir, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return fail("open", path);
    if (size > 0 && write(fd, buf, (size_t) size) != size) return fail("write", path);
    if (close(fd) != 0) return fail("close", path);
  }
  free(buf);
  return 0;
}

static int loop(const char *mode, const char *file, long count) {
  struct stat st;
  struct statx stx;
  double start = now_ns();
  for (long i = 0; i < count; i++) {
    if (strcmp(mode, "stat") == 0) {
      if (stat(file, &st) != 0) return fail("stat", file);
    } else if (strcmp(mode, "statsync") == 0) {
      if (statx(AT_FDCWD, file, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &stx) != 0) {
        return fail("statx", file);
      }
    } else {
      int fd = open(file, O_RDONLY);
      if (fd < 0) return fail("open", file);
      if (close(fd) != 0) return fail("close", file);
    }
  }
  printf("%.1f\n", (now_ns() - start) / (double) count);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "create") == 0) {
    return create_files(argv[2], atol(argv[3]), atol(argv[4]));
  }
  if (argc == 4 && (strcmp(argv[1], "stat") == 0 || strcmp(argv[1], "statsync") == 0 ||
                    strcmp(argv[1], "open") == 0)) {
    return loop(argv[1], argv[2], atol(argv[3]));
  }
  fprintf(stderr, "usage: benchtool create DIR COUNT SIZE | stat|statsync|open FILE COUNT\n");
  return 2;
}
