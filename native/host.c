/*
 * tsoverlay_host: synchronous Linux syscalls that Node's fs module lacks.
 *
 * Every path and name crosses this boundary as a latin1 "binary" string:
 * each char code 0..255 is one byte, so names that are not UTF-8 survive.
 * Failures throw Node-style errors (code, negative errno, syscall, path, dest).
 *
 * A path may name its base directory by an open fd: "@N" is the directory
 * open as fd N itself, and "@N/a/b" is "a/b" relative to it (the *at()
 * calls). A layer reached so stays reachable after its mount is moved or
 * detached. Any other path resolves as usual (AT_FDCWD). Errors show the
 * path as given.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/fs.h>

/* Linux 6.5 added FS_IOC_GETFSUUID; older uapi headers lack it. */
#ifndef FS_IOC_GETFSUUID
struct fsuuid2 {
  __u8 len;
  __u8 uuid[16];
};
#define FS_IOC_GETFSUUID _IOR(0x15, 0, struct fsuuid2)
#endif

#include <node_api.h>
#include <uv.h>

#ifndef RENAME_WHITEOUT
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE (1 << 1)
#define RENAME_WHITEOUT (1 << 2)
#endif

#ifndef XATTR_NAME_MAX
#define XATTR_NAME_MAX 255
#endif

#define STAT_LENGTH 16
#define STATVFS_LENGTH 11
#define MAX_ARGS 6

/* Number.MAX_SAFE_INTEGER: larger integers do not survive a JS number. */
#define SAFE_INT_MAX 9007199254740991.0

/* Attempts before lgetxattr/llistxattr give up when the value keeps growing. */
#define XATTR_SIZE_RETRIES 8

/* ---- generic N-API helpers ---- */

/* Throws for a failed N-API call unless the call left an exception pending. */
static napi_value napi_failed(napi_env env) {
  const napi_extended_error_info *info = NULL;
  const char *message = "N-API call failed";
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL &&
      info->error_message != NULL) {
    message = info->error_message;
  }
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, NULL, message);
  return NULL;
}

#define CHECK(call)                                  \
  do {                                               \
    if ((call) != napi_ok) return napi_failed(env);  \
  } while (0)

#define CHECK_BOOL(call)        \
  do {                          \
    if ((call) != napi_ok) {    \
      napi_failed(env);         \
      return false;             \
    }                           \
  } while (0)

static bool get_args(napi_env env, napi_callback_info info, size_t count,
                     napi_value *argv) {
  size_t argc = count;
  /* Missing arguments come back as undefined and fail the type checks. */
  CHECK_BOOL(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return true;
}

static const char *type_name(napi_env env, napi_value value) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return "unknown";
  switch (type) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_object: return "object";
    case napi_function: return "function";
    case napi_external: return "external";
    case napi_bigint: return "bigint";
  }
  return "unknown";
}

static bool throw_type(napi_env env, const char *name, const char *expected,
                       napi_value received) {
  char message[256];
  snprintf(message, sizeof message,
           "The \"%s\" argument must be %s. Received type %s", name, expected,
           type_name(env, received));
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return false;
}

static bool throw_range(napi_env env, const char *name, double min,
                        double max, double received) {
  char message[256];
  snprintf(message, sizeof message,
           "The value of \"%s\" is out of range. It must be an integer "
           ">= %.0f and <= %.0f. Received %.17g",
           name, min, max, received);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
  return false;
}

/* ---- Node-style system errors ---- */

static bool is_unknown_uv_text(const char *text) {
  return strncmp(text, "Unknown system error", 20) == 0;
}

/*
 * Names errno as Node does (libuv), falling back to glibc for the rest.
 * Linux has one value for ENOTSUP and EOPNOTSUPP, and it is named EOPNOTSUPP
 * here (as the kernel and glibc do) where Node says ENOTSUP.
 */
static void errno_code(int err, char *buf, size_t size) {
  if (err == EOPNOTSUPP) {
    snprintf(buf, size, "EOPNOTSUPP");
    return;
  }
  uv_err_name_r(-err, buf, size);
  if (!is_unknown_uv_text(buf)) return;
  const char *name = strerrorname_np(err);
  if (name != NULL) snprintf(buf, size, "%s", name);
}

static void errno_text(int err, char *buf, size_t size) {
  /* libuv's text for this value mentions sockets, which misleads here. */
  if (err == EOPNOTSUPP) {
    snprintf(buf, size, "operation not supported");
    return;
  }
  uv_strerror_r(-err, buf, size);
  if (!is_unknown_uv_text(buf)) return;
  char scratch[256];
  const char *text = strerror_r(err, scratch, sizeof scratch);
  snprintf(buf, size, "%s", text);
  /* libuv's descriptions are lower case, so match them. */
  buf[0] = (char)tolower((unsigned char)buf[0]);
}

static bool set_latin1_property(napi_env env, napi_value object,
                                const char *key, const char *bytes,
                                size_t length) {
  napi_value value;
  CHECK_BOOL(napi_create_string_latin1(env, bytes, length, &value));
  CHECK_BOOL(napi_set_named_property(env, object, key, value));
  return true;
}

/*
 * Throws `${code}: ${text}, ${syscall} '${path}' -> '${dest}'` with
 * properties code, errno (negative), syscall, path and dest.
 * path and dest are byte strings with explicit lengths and may be NULL.
 */
static napi_value throw_sys(napi_env env, int err, const char *syscall,
                            const char *path, size_t path_len,
                            const char *dest, size_t dest_len) {
  char code[64];
  char text[256];
  errno_code(err, code, sizeof code);
  errno_text(err, text, sizeof text);

  size_t capacity = strlen(code) + strlen(text) + strlen(syscall) + path_len +
                    dest_len + 32;
  char *message = malloc(capacity);
  if (message == NULL) {
    napi_throw_error(env, code, "out of memory while building an error");
    return NULL;
  }
  int length = snprintf(message, capacity, "%s: %s, %s", code, text, syscall);
  if (path != NULL) {
    length += snprintf(message + length, capacity - length, " '%.*s'",
                       (int)path_len, path);
  }
  if (dest != NULL) {
    length += snprintf(message + length, capacity - length, " -> '%.*s'",
                       (int)dest_len, dest);
  }

  napi_value message_value, code_value, error, number, syscall_value;
  napi_status status =
      napi_create_string_latin1(env, message, (size_t)length, &message_value);
  free(message);
  CHECK(status);
  CHECK(napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value));
  CHECK(napi_create_error(env, code_value, message_value, &error));
  CHECK(napi_create_int32(env, -err, &number));
  CHECK(napi_set_named_property(env, error, "errno", number));
  CHECK(napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH,
                                &syscall_value));
  CHECK(napi_set_named_property(env, error, "syscall", syscall_value));
  if (path != NULL && !set_latin1_property(env, error, "path", path, path_len))
    return NULL;
  if (dest != NULL && !set_latin1_property(env, error, "dest", dest, dest_len))
    return NULL;
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_sys_fd(napi_env env, int err, const char *syscall) {
  return throw_sys(env, err, syscall, NULL, 0, NULL, 0);
}

/* ---- argument conversion ---- */

/*
 * A path as given, and what the *at() calls take for it: rel relative to
 * dirfd. rel may point into bytes, so a path_arg is never copied.
 */
typedef struct {
  char bytes[PATH_MAX + 1];
  size_t length;
  int dirfd;
  const char *rel;
} path_arg;

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/*
 * Splits "@N" and "@N/rest" into dirfd N and rel "." or "rest" (slashes after
 * N are skipped, so rel never turns absolute). Anything else, "@x" and "@1x"
 * included, is rel itself against AT_FDCWD. An N above INT_MAX becomes -1,
 * which every *at() call rejects with EBADF.
 */
static void split_dirfd(path_arg *p) {
  const char *s = p->bytes;
  p->dirfd = AT_FDCWD;
  p->rel = s;
  if (s[0] != '@' || !is_digit(s[1])) return;
  long long fd = 0;
  size_t i = 1;
  for (; is_digit(s[i]); i++) {
    if (fd <= INT_MAX) fd = fd * 10 + (s[i] - '0');
  }
  if (s[i] != '\0' && s[i] != '/') return;
  while (s[i] == '/') i++;
  p->dirfd = fd > INT_MAX ? -1 : (int)fd;
  p->rel = s[i] == '\0' ? "." : s + i;
}

enum read_result { READ_OK, READ_TOO_LONG, READ_THREW };

/*
 * Copies a latin1 string into out (capacity max_len + 1). Char codes above
 * 255 and NUL are rejected because they cannot be one byte of a C path.
 */
static enum read_result read_binary(napi_env env, napi_value value,
                                    const char *name, char *out,
                                    size_t max_len, size_t *length) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) {
    napi_failed(env);
    return READ_THREW;
  }
  if (type != napi_string) {
    throw_type(env, name, "of type string", value);
    return READ_THREW;
  }
  size_t units = 0;
  if (napi_get_value_string_utf16(env, value, NULL, 0, &units) != napi_ok) {
    napi_failed(env);
    return READ_THREW;
  }
  *length = units;
  if (units > max_len) return READ_TOO_LONG;

  char16_t wide[PATH_MAX + 1];
  if (napi_get_value_string_utf16(env, value, wide, units + 1, &units) !=
      napi_ok) {
    napi_failed(env);
    return READ_THREW;
  }
  for (size_t i = 0; i < units; i++) {
    if (wide[i] == 0 || wide[i] > 255) {
      char message[256];
      snprintf(message, sizeof message,
               "The \"%s\" argument must be a latin1 binary string without "
               "NUL; char code %u at index %zu is invalid",
               name, (unsigned)wide[i], i);
      napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", message);
      return READ_THREW;
    }
    out[i] = (char)wide[i];
  }
  out[units] = '\0';
  return READ_OK;
}

/* Returns a malloc'd byte copy of any string, for error messages only. */
static char *copy_long_string(napi_env env, napi_value value, size_t *length) {
  size_t units = 0;
  if (napi_get_value_string_utf16(env, value, NULL, 0, &units) != napi_ok)
    return NULL;
  char16_t *wide = malloc((units + 1) * sizeof(char16_t));
  char *bytes = malloc(units + 1);
  if (wide == NULL || bytes == NULL ||
      napi_get_value_string_utf16(env, value, wide, units + 1, &units) !=
          napi_ok) {
    free(wide);
    free(bytes);
    return NULL;
  }
  for (size_t i = 0; i < units; i++)
    bytes[i] = wide[i] > 255 ? '?' : (char)wide[i];
  free(wide);
  *length = units;
  return bytes;
}

/* Throws ENAMETOOLONG naming the full path (and dest) as given. */
static void throw_name_too_long(napi_env env, const char *syscall,
                                napi_value path, napi_value dest) {
  size_t path_len = 0, dest_len = 0;
  char *path_bytes = copy_long_string(env, path, &path_len);
  char *dest_bytes = dest ? copy_long_string(env, dest, &dest_len) : NULL;
  if (path_bytes == NULL || (dest != NULL && dest_bytes == NULL)) {
    free(path_bytes);
    free(dest_bytes);
    napi_failed(env);
    return;
  }
  throw_sys(env, ENAMETOOLONG, syscall, path_bytes, path_len, dest_bytes,
            dest_len);
  free(path_bytes);
  free(dest_bytes);
}

static bool arg_path(napi_env env, napi_value value, const char *name,
                     const char *syscall, path_arg *out) {
  enum read_result result =
      read_binary(env, value, name, out->bytes, PATH_MAX, &out->length);
  if (result == READ_TOO_LONG) throw_name_too_long(env, syscall, value, NULL);
  if (result != READ_OK) return false;
  split_dirfd(out);
  return true;
}

static bool arg_path_pair(napi_env env, napi_value *values,
                          const char *syscall, path_arg *first,
                          const char *first_name, path_arg *second,
                          const char *second_name) {
  enum read_result a = read_binary(env, values[0], first_name, first->bytes,
                                   PATH_MAX, &first->length);
  if (a == READ_THREW) return false;
  enum read_result b = read_binary(env, values[1], second_name, second->bytes,
                                   PATH_MAX, &second->length);
  if (b == READ_THREW) return false;
  if (a == READ_TOO_LONG || b == READ_TOO_LONG) {
    throw_name_too_long(env, syscall, values[0], values[1]);
    return false;
  }
  split_dirfd(first);
  split_dirfd(second);
  return true;
}

/* Reads an xattr name. Over XATTR_NAME_MAX bytes throws ERANGE, as Linux does. */
static bool arg_xattr_name(napi_env env, napi_value value,
                           const char *syscall, const path_arg *path,
                           char *out) {
  size_t length;
  enum read_result result =
      read_binary(env, value, "name", out, XATTR_NAME_MAX, &length);
  if (result == READ_TOO_LONG) {
    if (path != NULL)
      throw_sys(env, ERANGE, syscall, path->bytes, path->length, NULL, 0);
    else
      throw_sys_fd(env, ERANGE, syscall);
  }
  return result == READ_OK;
}

static bool arg_integer(napi_env env, napi_value value, const char *name,
                        double min, double max, int64_t *out) {
  *out = 0;
  napi_valuetype type;
  CHECK_BOOL(napi_typeof(env, value, &type));
  if (type != napi_number)
    return throw_type(env, name, "of type number", value);
  double number;
  CHECK_BOOL(napi_get_value_double(env, value, &number));
  /* NaN fails both comparisons. */
  if (!(number >= min && number <= max) || trunc(number) != number)
    return throw_range(env, name, min, max, number);
  *out = (int64_t)number;
  return true;
}

static bool arg_fd(napi_env env, napi_value value, const char *name,
                   int *out) {
  int64_t fd;
  if (!arg_integer(env, value, name, 0, INT_MAX, &fd)) return false;
  *out = (int)fd;
  return true;
}

static bool arg_uint32(napi_env env, napi_value value, const char *name,
                       uint32_t *out) {
  int64_t number;
  if (!arg_integer(env, value, name, 0, UINT32_MAX, &number)) return false;
  *out = (uint32_t)number;
  return true;
}

/* Reads a uid or gid, where -1 leaves the id unchanged as in chown(2). */
static bool arg_owner_id(napi_env env, napi_value value, const char *name,
                         uint32_t *out) {
  int64_t number;
  if (!arg_integer(env, value, name, -1, UINT32_MAX, &number)) return false;
  *out = (uint32_t)number;
  return true;
}

static bool arg_is_undefined(napi_env env, napi_value value) {
  napi_valuetype type;
  return napi_typeof(env, value, &type) == napi_ok && type == napi_undefined;
}

static bool arg_stat_array(napi_env env, napi_value value, size_t min_length,
                           int64_t **out) {
  bool is_typed = false;
  CHECK_BOOL(napi_is_typedarray(env, value, &is_typed));
  if (!is_typed)
    return throw_type(env, "out", "an instance of BigInt64Array", value);
  napi_typedarray_type type;
  size_t length;
  void *data;
  CHECK_BOOL(
      napi_get_typedarray_info(env, value, &type, &length, &data, NULL, NULL));
  if (type != napi_bigint64_array)
    return throw_type(env, "out", "an instance of BigInt64Array", value);
  if (length < min_length) {
    char message[128];
    snprintf(message, sizeof message,
             "The \"out\" BigInt64Array must have at least %zu elements, "
             "got %zu", min_length, length);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return false;
  }
  *out = data;
  return true;
}

static size_t element_size(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array:
      return 1;
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
  }
  return 0;
}

/* Accepts a Buffer, any TypedArray or a DataView as raw bytes. */
static bool arg_bytes(napi_env env, napi_value value, const char *name,
                      void **data, size_t *length) {
  bool is_typed = false, is_view = false;
  CHECK_BOOL(napi_is_typedarray(env, value, &is_typed));
  if (is_typed) {
    napi_typedarray_type type;
    size_t count;
    CHECK_BOOL(
        napi_get_typedarray_info(env, value, &type, &count, data, NULL, NULL));
    size_t size = element_size(type);
    if (size == 0)
      return throw_type(env, name, "a Buffer, TypedArray or DataView", value);
    *length = count * size;
    return true;
  }
  CHECK_BOOL(napi_is_dataview(env, value, &is_view));
  if (is_view) {
    CHECK_BOOL(napi_get_dataview_info(env, value, length, data, NULL, NULL));
    return true;
  }
  return throw_type(env, name, "a Buffer, TypedArray or DataView", value);
}

static bool arg_timespec(napi_env env, napi_value sec_value,
                         napi_value nsec_value, const char *sec_name,
                         const char *nsec_name, struct timespec *out) {
  int64_t sec, nsec;
  if (!arg_integer(env, sec_value, sec_name, -SAFE_INT_MAX, SAFE_INT_MAX,
                   &sec))
    return false;
  double nsec_max = UTIME_NOW > UTIME_OMIT ? UTIME_NOW : UTIME_OMIT;
  if (!arg_integer(env, nsec_value, nsec_name, 0, nsec_max, &nsec))
    return false;
  if (nsec > 999999999 && nsec != UTIME_NOW && nsec != UTIME_OMIT) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "Nanoseconds must be 0..999999999, UTIME_NOW or "
                           "UTIME_OMIT");
    return false;
  }
  out->tv_sec = (time_t)sec;
  out->tv_nsec = (long)nsec;
  return true;
}

static napi_value make_number(napi_env env, double number) {
  napi_value value;
  CHECK(napi_create_double(env, number, &value));
  return value;
}

#define ARGS(count)                                       \
  napi_value argv[MAX_ARGS];                              \
  if (!get_args(env, info, (count), argv)) return NULL

#define PATH_ERROR(err, syscall, p) \
  throw_sys(env, (err), (syscall), (p).bytes, (p).length, NULL, 0)

#define PAIR_ERROR(err, syscall, p, d)                                  \
  throw_sys(env, (err), (syscall), (p).bytes, (p).length, (d).bytes,   \
            (d).length)

/* ---- stat family ---- */

static void fill_stat(int64_t *out, const struct stat *st) {
  out[0] = (int64_t)st->st_mode;
  out[1] = (int64_t)st->st_uid;
  out[2] = (int64_t)st->st_gid;
  out[3] = (int64_t)st->st_size;
  out[4] = (int64_t)st->st_dev;
  out[5] = (int64_t)st->st_nlink;
  out[6] = (int64_t)st->st_ino;
  out[7] = (int64_t)st->st_rdev;
  out[8] = (int64_t)st->st_blksize;
  out[9] = (int64_t)st->st_blocks;
  out[10] = (int64_t)st->st_atim.tv_sec;
  out[11] = (int64_t)st->st_atim.tv_nsec;
  out[12] = (int64_t)st->st_mtim.tv_sec;
  out[13] = (int64_t)st->st_mtim.tv_nsec;
  out[14] = (int64_t)st->st_ctim.tv_sec;
  out[15] = (int64_t)st->st_ctim.tv_nsec;
}

static napi_value host_lstat(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg path;
  int64_t *out;
  if (!arg_path(env, argv[0], "path", "lstat", &path)) return NULL;
  if (!arg_stat_array(env, argv[1], STAT_LENGTH, &out)) return NULL;
  struct stat st;
  if (fstatat(path.dirfd, path.rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return PATH_ERROR(errno, "lstat", path);
  fill_stat(out, &st);
  return NULL;
}

/* lstat for lookups, where a missing name is the common case: returns 0 or
 * the negative errno instead of throwing, which costs far less. */
static napi_value host_try_lstat(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg path;
  int64_t *out;
  if (!arg_path(env, argv[0], "path", "lstat", &path)) return NULL;
  if (!arg_stat_array(env, argv[1], STAT_LENGTH, &out)) return NULL;
  struct stat st;
  if (fstatat(path.dirfd, path.rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return make_number(env, -errno);
  fill_stat(out, &st);
  return make_number(env, 0);
}

static napi_value host_fstat(napi_env env, napi_callback_info info) {
  ARGS(2);
  int fd;
  int64_t *out;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_stat_array(env, argv[1], STAT_LENGTH, &out)) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) return throw_sys_fd(env, errno, "fstat");
  fill_stat(out, &st);
  return NULL;
}

static napi_value host_statvfs(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg path;
  int64_t *out;
  if (!arg_path(env, argv[0], "path", "statvfs", &path)) return NULL;
  if (!arg_stat_array(env, argv[1], STATVFS_LENGTH, &out)) return NULL;

  struct statvfs st;
  if (path.dirfd == AT_FDCWD) {
    if (statvfs(path.bytes, &st) != 0)
      return PATH_ERROR(errno, "statvfs", path);
  } else {
    /* Follows a final symlink as statvfs does; fstatfs takes O_PATH fds. */
    int fd = openat(path.dirfd, path.rel, O_PATH | O_CLOEXEC);
    if (fd < 0) return PATH_ERROR(errno, "statvfs", path);
    int result = fstatvfs(fd, &st);
    int err = errno;
    close(fd);
    if (result != 0) return PATH_ERROR(err, "statvfs", path);
  }

  out[0] = (int64_t)st.f_bsize;
  out[1] = (int64_t)st.f_frsize;
  out[2] = (int64_t)st.f_blocks;
  out[3] = (int64_t)st.f_bfree;
  out[4] = (int64_t)st.f_bavail;
  out[5] = (int64_t)st.f_files;
  out[6] = (int64_t)st.f_ffree;
  out[7] = (int64_t)st.f_favail;
  out[8] = (int64_t)st.f_fsid;
  out[9] = (int64_t)st.f_flag;
  out[10] = (int64_t)st.f_namemax;
  return NULL;
}

/* ---- directories ---- */

static napi_value make_readdir_result(napi_env env, napi_value names,
                                      const uint8_t *types,
                                      const int64_t *inos, size_t count) {
  napi_value buffer, array, ino_buffer, ino_array, result;
  void *data = NULL;
  CHECK(napi_create_arraybuffer(env, count, &data, &buffer));
  if (count > 0) memcpy(data, types, count);
  CHECK(napi_create_typedarray(env, napi_uint8_array, count, buffer, 0,
                               &array));
  CHECK(napi_create_arraybuffer(env, count * sizeof(int64_t), &data,
                                &ino_buffer));
  if (count > 0) memcpy(data, inos, count * sizeof(int64_t));
  CHECK(napi_create_typedarray(env, napi_bigint64_array, count, ino_buffer,
                               0, &ino_array));
  CHECK(napi_create_object(env, &result));
  CHECK(napi_set_named_property(env, result, "names", names));
  CHECK(napi_set_named_property(env, result, "types", array));
  CHECK(napi_set_named_property(env, result, "inos", ino_array));
  return result;
}

static napi_value host_readdir(napi_env env, napi_callback_info info) {
  ARGS(1);
  path_arg path;
  if (!arg_path(env, argv[0], "path", "opendir", &path)) return NULL;
  napi_value names;
  CHECK(napi_create_array(env, &names));

  /* The flags glibc's opendir(3) uses. */
  int fd = openat(path.dirfd, path.rel,
                  O_RDONLY | O_NONBLOCK | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return PATH_ERROR(errno, "opendir", path);
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    int err = errno;
    close(fd);
    return PATH_ERROR(err, "opendir", path);
  }

  uint8_t *types = NULL;
  int64_t *inos = NULL;
  size_t count = 0, capacity = 0;
  napi_value result = NULL;
  for (;;) {
    errno = 0;
    struct dirent *entry = readdir(dir);
    if (entry == NULL) {
      if (errno != 0) {
        PATH_ERROR(errno, "readdir", path);
        goto done;
      }
      break;
    }
    const char *name = entry->d_name;
    if (name[0] == '.' &&
        (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
      continue;
    if (count == capacity) {
      capacity = capacity ? capacity * 2 : 64;
      uint8_t *grown = realloc(types, capacity);
      if (grown == NULL) {
        PATH_ERROR(ENOMEM, "readdir", path);
        goto done;
      }
      types = grown;
      int64_t *grown_inos = realloc(inos, capacity * sizeof(int64_t));
      if (grown_inos == NULL) {
        PATH_ERROR(ENOMEM, "readdir", path);
        goto done;
      }
      inos = grown_inos;
    }
    napi_value value;
    if (napi_create_string_latin1(env, name, NAPI_AUTO_LENGTH, &value) !=
            napi_ok ||
        napi_set_element(env, names, (uint32_t)count, value) != napi_ok) {
      napi_failed(env);
      goto done;
    }
    inos[count] = (int64_t)entry->d_ino;
    types[count++] = entry->d_type;
  }
  result = make_readdir_result(env, names, types, inos, count);
done:
  closedir(dir);
  free(types);
  free(inos);
  return result;
}

static napi_value host_mkdir(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg path;
  uint32_t mode;
  if (!arg_path(env, argv[0], "path", "mkdir", &path)) return NULL;
  if (!arg_uint32(env, argv[1], "mode", &mode)) return NULL;
  if (mkdirat(path.dirfd, path.rel, mode) != 0)
    return PATH_ERROR(errno, "mkdir", path);
  return NULL;
}

static napi_value host_rmdir(napi_env env, napi_callback_info info) {
  ARGS(1);
  path_arg path;
  if (!arg_path(env, argv[0], "path", "rmdir", &path)) return NULL;
  if (unlinkat(path.dirfd, path.rel, AT_REMOVEDIR) != 0)
    return PATH_ERROR(errno, "rmdir", path);
  return NULL;
}

/* ---- files and links ---- */

static napi_value host_open(napi_env env, napi_callback_info info) {
  ARGS(3);
  path_arg path;
  int64_t flags;
  uint32_t mode = 0666;
  if (!arg_path(env, argv[0], "path", "open", &path)) return NULL;
  if (!arg_integer(env, argv[1], "flags", INT32_MIN, INT32_MAX, &flags))
    return NULL;
  if (!arg_is_undefined(env, argv[2]) &&
      !arg_uint32(env, argv[2], "mode", &mode))
    return NULL;
  int fd;
  /* O_CLOEXEC always, as libuv does, so children never inherit fds. */
  do {
    fd = openat(path.dirfd, path.rel, (int)flags | O_CLOEXEC, (mode_t)mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return PATH_ERROR(errno, "open", path);
  return make_number(env, fd);
}

static napi_value host_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  /* On Linux the fd is released even when close reports EINTR. */
  if (close(fd) != 0 && errno != EINTR)
    return throw_sys_fd(env, errno, "close");
  return NULL;
}

static napi_value host_mknod(napi_env env, napi_callback_info info) {
  ARGS(3);
  path_arg path;
  uint32_t mode;
  int64_t dev;
  if (!arg_path(env, argv[0], "path", "mknod", &path)) return NULL;
  if (!arg_uint32(env, argv[1], "mode", &mode)) return NULL;
  if (!arg_integer(env, argv[2], "dev", 0, SAFE_INT_MAX, &dev)) return NULL;
  if (mknodat(path.dirfd, path.rel, (mode_t)mode, (dev_t)dev) != 0)
    return PATH_ERROR(errno, "mknod", path);
  return NULL;
}

/* Errors name target as path and the new link as dest, like fs.symlink.
 * The target is stored as given, never read as an "@N" path. */
static napi_value host_symlink(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg target, path;
  if (!arg_path_pair(env, argv, "symlink", &target, "target", &path, "path"))
    return NULL;
  if (symlinkat(target.bytes, path.dirfd, path.rel) != 0)
    return PAIR_ERROR(errno, "symlink", target, path);
  return NULL;
}

static napi_value host_readlink(napi_env env, napi_callback_info info) {
  ARGS(1);
  path_arg path;
  if (!arg_path(env, argv[0], "path", "readlink", &path)) return NULL;
  char target[PATH_MAX + 1];
  ssize_t length = readlinkat(path.dirfd, path.rel, target, sizeof target);
  if (length < 0) return PATH_ERROR(errno, "readlink", path);
  /* A full buffer means the target may have been cut short. */
  if ((size_t)length == sizeof target)
    return PATH_ERROR(ENAMETOOLONG, "readlink", path);
  napi_value value;
  CHECK(napi_create_string_latin1(env, target, (size_t)length, &value));
  return value;
}

static napi_value host_unlink(napi_env env, napi_callback_info info) {
  ARGS(1);
  path_arg path;
  if (!arg_path(env, argv[0], "path", "unlink", &path)) return NULL;
  if (unlinkat(path.dirfd, path.rel, 0) != 0)
    return PATH_ERROR(errno, "unlink", path);
  return NULL;
}

static napi_value host_link(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg old_path, new_path;
  if (!arg_path_pair(env, argv, "link", &old_path, "oldPath", &new_path,
                     "newPath"))
    return NULL;
  if (linkat(old_path.dirfd, old_path.rel, new_path.dirfd, new_path.rel, 0) !=
      0)
    return PAIR_ERROR(errno, "link", old_path, new_path);
  return NULL;
}

static int rename_with_flags(const path_arg *old_path,
                             const path_arg *new_path, unsigned int flags) {
#if defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 28))
  return renameat2(old_path->dirfd, old_path->rel, new_path->dirfd,
                   new_path->rel, flags);
#else
  return (int)syscall(SYS_renameat2, old_path->dirfd, old_path->rel,
                      new_path->dirfd, new_path->rel, flags);
#endif
}

/* syscall is 'rename' for flags 0 (as in Node) and 'renameat2' otherwise. */
static napi_value host_rename(napi_env env, napi_callback_info info) {
  ARGS(3);
  path_arg old_path, new_path;
  uint32_t flags = 0;
  if (!arg_path_pair(env, argv, "rename", &old_path, "oldPath", &new_path,
                     "newPath"))
    return NULL;
  if (!arg_is_undefined(env, argv[2]) &&
      !arg_uint32(env, argv[2], "flags", &flags))
    return NULL;
  if (rename_with_flags(&old_path, &new_path, flags) != 0) {
    const char *syscall = flags == 0 ? "rename" : "renameat2";
    return PAIR_ERROR(errno, syscall, old_path, new_path);
  }
  return NULL;
}

/* ---- attributes ---- */

static napi_value host_chmod(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg path;
  uint32_t mode;
  if (!arg_path(env, argv[0], "path", "chmod", &path)) return NULL;
  if (!arg_uint32(env, argv[1], "mode", &mode)) return NULL;
  if (fchmodat(path.dirfd, path.rel, (mode_t)mode, 0) != 0)
    return PATH_ERROR(errno, "chmod", path);
  return NULL;
}

static napi_value host_fchmod(napi_env env, napi_callback_info info) {
  ARGS(2);
  int fd;
  uint32_t mode;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_uint32(env, argv[1], "mode", &mode)) return NULL;
  if (fchmod(fd, (mode_t)mode) != 0) return throw_sys_fd(env, errno, "fchmod");
  return NULL;
}

static napi_value host_lchown(napi_env env, napi_callback_info info) {
  ARGS(3);
  path_arg path;
  uint32_t uid, gid;
  if (!arg_path(env, argv[0], "path", "lchown", &path)) return NULL;
  if (!arg_owner_id(env, argv[1], "uid", &uid)) return NULL;
  if (!arg_owner_id(env, argv[2], "gid", &gid)) return NULL;
  if (fchownat(path.dirfd, path.rel, (uid_t)uid, (gid_t)gid,
               AT_SYMLINK_NOFOLLOW) != 0)
    return PATH_ERROR(errno, "lchown", path);
  return NULL;
}

static napi_value host_fchown(napi_env env, napi_callback_info info) {
  ARGS(3);
  int fd;
  uint32_t uid, gid;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_owner_id(env, argv[1], "uid", &uid)) return NULL;
  if (!arg_owner_id(env, argv[2], "gid", &gid)) return NULL;
  if (fchown(fd, (uid_t)uid, (gid_t)gid) != 0)
    return throw_sys_fd(env, errno, "fchown");
  return NULL;
}

static napi_value host_utimens(napi_env env, napi_callback_info info) {
  ARGS(5);
  path_arg path;
  struct timespec times[2];
  if (!arg_path(env, argv[0], "path", "utimensat", &path)) return NULL;
  if (!arg_timespec(env, argv[1], argv[2], "atimeSec", "atimeNsec",
                    &times[0]) ||
      !arg_timespec(env, argv[3], argv[4], "mtimeSec", "mtimeNsec", &times[1]))
    return NULL;
  if (utimensat(path.dirfd, path.rel, times, AT_SYMLINK_NOFOLLOW) != 0)
    return PATH_ERROR(errno, "utimensat", path);
  return NULL;
}

static napi_value host_futimens(napi_env env, napi_callback_info info) {
  ARGS(5);
  int fd;
  struct timespec times[2];
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_timespec(env, argv[1], argv[2], "atimeSec", "atimeNsec",
                    &times[0]) ||
      !arg_timespec(env, argv[3], argv[4], "mtimeSec", "mtimeNsec", &times[1]))
    return NULL;
  if (futimens(fd, times) != 0) return throw_sys_fd(env, errno, "futimens");
  return NULL;
}

/*
 * truncate(2) relative to dirfd: returns 0 or an errno. The type is checked
 * on an O_PATH fd first so that a directory gives EISDIR and a fifo or
 * device EINVAL, as truncate(2) does, and neither is ever opened for write.
 */
static int truncate_at(int dirfd, const char *rel, off_t length) {
  int probe = openat(dirfd, rel, O_PATH | O_CLOEXEC);
  if (probe < 0) return errno;
  struct stat st;
  int err = fstat(probe, &st) != 0 ? errno : 0;
  close(probe);
  if (err != 0) return err;
  if (S_ISDIR(st.st_mode)) return EISDIR;
  if (!S_ISREG(st.st_mode)) return EINVAL;
  int fd;
  do {
    fd = openat(dirfd, rel, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno;
  err = ftruncate(fd, length) != 0 ? errno : 0;
  close(fd);
  return err;
}

static napi_value host_truncate(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg path;
  int64_t length;
  if (!arg_path(env, argv[0], "path", "truncate", &path)) return NULL;
  if (!arg_integer(env, argv[1], "length", 0, SAFE_INT_MAX, &length))
    return NULL;
  if (path.dirfd == AT_FDCWD) {
    if (truncate(path.bytes, (off_t)length) != 0)
      return PATH_ERROR(errno, "truncate", path);
    return NULL;
  }
  int err = truncate_at(path.dirfd, path.rel, (off_t)length);
  if (err != 0) return PATH_ERROR(err, "truncate", path);
  return NULL;
}

static napi_value host_ftruncate(napi_env env, napi_callback_info info) {
  ARGS(2);
  int fd;
  int64_t length;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_integer(env, argv[1], "length", 0, SAFE_INT_MAX, &length))
    return NULL;
  if (ftruncate(fd, (off_t)length) != 0)
    return throw_sys_fd(env, errno, "ftruncate");
  return NULL;
}

/* ---- extended attributes ---- */

/*
 * Linux 6.13 added setxattrat, getxattrat, listxattrat and removexattrat,
 * which resolve a path relative to a dirfd and take AT_SYMLINK_NOFOLLOW.
 * Older uapi headers lack the numbers; these are the x86_64 ones, which the
 * asm-generic table (arm64) shares.
 */
#if !defined(__NR_getxattrat) && !defined(__ILP32__) && \
    (defined(__x86_64__) || defined(__aarch64__))
#define __NR_setxattrat 463
#define __NR_getxattrat 464
#define __NR_listxattrat 465
#define __NR_removexattrat 466
#endif

/* The kernel's struct xattr_args (include/uapi/linux/xattr.h). */
struct host_xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

/*
 * Whether "@N" paths use the *xattrat syscalls. init_xattrat decides once at
 * load, and the first ENOSYS turns them off for good. Without them, the
 * object is opened O_PATH|O_NOFOLLOW and reached through /proc/self/fd,
 * which needs /proc mounted. TSOVERLAY_NO_XATTRAT=1 forces that fallback, so
 * that tests can cover it on a kernel that has the syscalls.
 */
static bool use_xattrat = false;

static void init_xattrat(void) {
  const char *off = getenv("TSOVERLAY_NO_XATTRAT");
  use_xattrat = false;
  if (off != NULL && strcmp(off, "1") == 0) return;
#ifdef __NR_getxattrat
  /* Invalid at_flags and usize 0 make each call fail with EINVAL before it
   * touches anything. Any other result (ENOSYS, or EPERM from a seccomp
   * filter that rejects unknown calls) means the call cannot be used. */
  const unsigned int bad_flags = 0x80000000u;
  long numbers[] = {__NR_setxattrat, __NR_getxattrat, __NR_listxattrat,
                    __NR_removexattrat};
  for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
    errno = 0;
    long result = syscall(numbers[i], AT_FDCWD, "/", bad_flags, "user.x",
                          NULL, (size_t)0);
    if (result != -1 || errno != EINVAL) return;
  }
  use_xattrat = true;
#endif
}

static void close_keeping_errno(int fd) {
  int err = errno;
  close(fd);
  errno = err;
}

/*
 * Opens the fallback for "@N" paths: an O_PATH fd on the object itself (a
 * final symlink not followed), with its /proc/self/fd name put in proc.
 * Following that magic link reaches the fd's object, so the caller uses the
 * *xattr calls that follow. The l*xattr calls would act on the /proc link.
 */
static int open_proc_path(const path_arg *p, char *proc, size_t size) {
  int fd = openat(p->dirfd, p->rel, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) snprintf(proc, size, "/proc/self/fd/%d", fd);
  return fd;
}

#ifdef __NR_getxattrat
/* Returns true if an *xattrat call failed with ENOSYS, and turns the calls
 * off so that this caller and all later ones use the fallback. */
static bool xattrat_missing(long result) {
  if (result != -1 || errno != ENOSYS) return false;
  use_xattrat = false;
  return true;
}
#endif

/* lgetxattr for any path_arg. */
static ssize_t path_getxattr(const path_arg *p, const char *name, void *value,
                             size_t size) {
  if (p->dirfd == AT_FDCWD) return lgetxattr(p->bytes, name, value, size);
#ifdef __NR_getxattrat
  if (use_xattrat) {
    struct host_xattr_args args = {
        (uint64_t)(uintptr_t)value,
        size > UINT32_MAX ? UINT32_MAX : (uint32_t)size, 0};
    long result = syscall(__NR_getxattrat, p->dirfd, p->rel,
                          AT_SYMLINK_NOFOLLOW, name, &args, sizeof args);
    if (!xattrat_missing(result)) return (ssize_t)result;
  }
#endif
  char proc[64];
  int fd = open_proc_path(p, proc, sizeof proc);
  if (fd < 0) return -1;
  ssize_t result = getxattr(proc, name, value, size);
  close_keeping_errno(fd);
  return result;
}

/* llistxattr for any path_arg. */
static ssize_t path_listxattr(const path_arg *p, char *list, size_t size) {
  if (p->dirfd == AT_FDCWD) return llistxattr(p->bytes, list, size);
#ifdef __NR_listxattrat
  if (use_xattrat) {
    long result = syscall(__NR_listxattrat, p->dirfd, p->rel,
                          AT_SYMLINK_NOFOLLOW, list, size);
    if (!xattrat_missing(result)) return (ssize_t)result;
  }
#endif
  char proc[64];
  int fd = open_proc_path(p, proc, sizeof proc);
  if (fd < 0) return -1;
  ssize_t result = listxattr(proc, list, size);
  close_keeping_errno(fd);
  return result;
}

/* lsetxattr for any path_arg. */
static int path_setxattr(const path_arg *p, const char *name,
                         const void *value, size_t size, int flags) {
  if (p->dirfd == AT_FDCWD)
    return lsetxattr(p->bytes, name, value, size, flags);
#ifdef __NR_setxattrat
  /* The u32 field would cut a larger size short, so such a size goes the
   * fallback way, where the kernel rejects it with E2BIG. */
  if (use_xattrat && size <= UINT32_MAX) {
    struct host_xattr_args args = {(uint64_t)(uintptr_t)value,
                                   (uint32_t)size, (uint32_t)flags};
    long result = syscall(__NR_setxattrat, p->dirfd, p->rel,
                          AT_SYMLINK_NOFOLLOW, name, &args, sizeof args);
    if (!xattrat_missing(result)) return (int)result;
  }
#endif
  char proc[64];
  int fd = open_proc_path(p, proc, sizeof proc);
  if (fd < 0) return -1;
  int result = setxattr(proc, name, value, size, flags);
  close_keeping_errno(fd);
  return result;
}

/* lremovexattr for any path_arg. */
static int path_removexattr(const path_arg *p, const char *name) {
  if (p->dirfd == AT_FDCWD) return lremovexattr(p->bytes, name);
#ifdef __NR_removexattrat
  if (use_xattrat) {
    long result = syscall(__NR_removexattrat, p->dirfd, p->rel,
                          AT_SYMLINK_NOFOLLOW, name);
    if (!xattrat_missing(result)) return (int)result;
  }
#endif
  char proc[64];
  int fd = open_proc_path(p, proc, sizeof proc);
  if (fd < 0) return -1;
  int result = removexattr(proc, name);
  close_keeping_errno(fd);
  return result;
}

/* Target of an xattr call: a path (never followed) or an fd. */
typedef struct {
  const path_arg *path;
  int fd;
} xattr_target;

static ssize_t target_getxattr(const xattr_target *t, const char *name,
                               void *value, size_t size) {
  return t->path ? path_getxattr(t->path, name, value, size)
                 : fgetxattr(t->fd, name, value, size);
}

static ssize_t target_listxattr(const xattr_target *t, char *list,
                                size_t size) {
  return t->path ? path_listxattr(t->path, list, size)
                 : flistxattr(t->fd, list, size);
}

static napi_value target_error(napi_env env, int err, const char *syscall,
                               const xattr_target *t) {
  if (t->path) return PATH_ERROR(err, syscall, *t->path);
  return throw_sys_fd(env, err, syscall);
}

/* Queries the size, then reads, and retries if the value grew in between. */
static napi_value get_xattr(napi_env env, const xattr_target *t,
                            const char *name, const char *syscall) {
  for (int attempt = 0; attempt < XATTR_SIZE_RETRIES; attempt++) {
    ssize_t size = target_getxattr(t, name, NULL, 0);
    if (size < 0) return target_error(env, errno, syscall, t);
    napi_value result;
    if (size == 0) {
      void *unused;
      CHECK(napi_create_buffer(env, 0, &unused, &result));
      return result;
    }
    char *value = malloc((size_t)size);
    if (value == NULL) return target_error(env, ENOMEM, syscall, t);
    ssize_t length = target_getxattr(t, name, value, (size_t)size);
    if (length < 0) {
      int err = errno;
      free(value);
      if (err == ERANGE) continue;
      return target_error(env, err, syscall, t);
    }
    napi_status status =
        napi_create_buffer_copy(env, (size_t)length, value, NULL, &result);
    free(value);
    CHECK(status);
    return result;
  }
  return target_error(env, ERANGE, syscall, t);
}

static napi_value make_name_list(napi_env env, const char *list,
                                 size_t length) {
  napi_value names;
  CHECK(napi_create_array(env, &names));
  uint32_t index = 0;
  size_t start = 0;
  while (start < length) {
    size_t end = start;
    while (end < length && list[end] != '\0') end++;
    if (end > start) {
      napi_value name;
      CHECK(napi_create_string_latin1(env, list + start, end - start, &name));
      CHECK(napi_set_element(env, names, index++, name));
    }
    start = end + 1;
  }
  return names;
}

static napi_value list_xattr(napi_env env, const xattr_target *t,
                             const char *syscall) {
  for (int attempt = 0; attempt < XATTR_SIZE_RETRIES; attempt++) {
    ssize_t size = target_listxattr(t, NULL, 0);
    if (size < 0) return target_error(env, errno, syscall, t);
    if (size == 0) return make_name_list(env, "", 0);
    char *list = malloc((size_t)size);
    if (list == NULL) return target_error(env, ENOMEM, syscall, t);
    ssize_t length = target_listxattr(t, list, (size_t)size);
    if (length < 0) {
      int err = errno;
      free(list);
      if (err == ERANGE) continue;
      return target_error(env, err, syscall, t);
    }
    napi_value names = make_name_list(env, list, (size_t)length);
    free(list);
    return names;
  }
  return target_error(env, ERANGE, syscall, t);
}

static napi_value host_lgetxattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg path;
  char name[XATTR_NAME_MAX + 1];
  if (!arg_path(env, argv[0], "path", "lgetxattr", &path)) return NULL;
  if (!arg_xattr_name(env, argv[1], "lgetxattr", &path, name)) return NULL;
  xattr_target target = {&path, -1};
  return get_xattr(env, &target, name, "lgetxattr");
}

/* lgetxattr for lookups, where a missing xattr is the common case: returns
 * the value, or the negative errno instead of throwing. One syscall for
 * values up to 4 KiB. */
static napi_value host_try_lgetxattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg path;
  char name[XATTR_NAME_MAX + 1];
  if (!arg_path(env, argv[0], "path", "lgetxattr", &path)) return NULL;
  xattr_target target = {&path, -1};
  if (!arg_xattr_name(env, argv[1], "lgetxattr", &path, name)) return NULL;
  char small[4096];
  ssize_t length = path_getxattr(&path, name, small, sizeof(small));
  if (length >= 0) {
    napi_value result;
    CHECK(napi_create_buffer_copy(env, (size_t)length, small, NULL, &result));
    return result;
  }
  if (errno != ERANGE) return make_number(env, -errno);
  return get_xattr(env, &target, name, "lgetxattr");
}

static napi_value host_fgetxattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  xattr_target target = {NULL, -1};
  char name[XATTR_NAME_MAX + 1];
  if (!arg_fd(env, argv[0], "fd", &target.fd)) return NULL;
  if (!arg_xattr_name(env, argv[1], "fgetxattr", NULL, name)) return NULL;
  return get_xattr(env, &target, name, "fgetxattr");
}

static napi_value host_llistxattr(napi_env env, napi_callback_info info) {
  ARGS(1);
  path_arg path;
  if (!arg_path(env, argv[0], "path", "llistxattr", &path)) return NULL;
  xattr_target target = {&path, -1};
  return list_xattr(env, &target, "llistxattr");
}

static napi_value host_flistxattr(napi_env env, napi_callback_info info) {
  ARGS(1);
  xattr_target target = {NULL, -1};
  if (!arg_fd(env, argv[0], "fd", &target.fd)) return NULL;
  return list_xattr(env, &target, "flistxattr");
}

static bool arg_xattr_flags(napi_env env, napi_value value, int *out) {
  *out = 0;
  if (arg_is_undefined(env, value)) return true;
  int64_t flags;
  if (!arg_integer(env, value, "flags", 0, INT32_MAX, &flags)) return false;
  *out = (int)flags;
  return true;
}

static napi_value host_lsetxattr(napi_env env, napi_callback_info info) {
  ARGS(4);
  path_arg path;
  char name[XATTR_NAME_MAX + 1];
  void *value;
  size_t size;
  int flags;
  if (!arg_path(env, argv[0], "path", "lsetxattr", &path)) return NULL;
  if (!arg_xattr_name(env, argv[1], "lsetxattr", &path, name)) return NULL;
  if (!arg_bytes(env, argv[2], "value", &value, &size)) return NULL;
  if (!arg_xattr_flags(env, argv[3], &flags)) return NULL;
  if (path_setxattr(&path, name, value, size, flags) != 0)
    return PATH_ERROR(errno, "lsetxattr", path);
  return NULL;
}

static napi_value host_fsetxattr(napi_env env, napi_callback_info info) {
  ARGS(4);
  int fd;
  char name[XATTR_NAME_MAX + 1];
  void *value;
  size_t size;
  int flags;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_xattr_name(env, argv[1], "fsetxattr", NULL, name)) return NULL;
  if (!arg_bytes(env, argv[2], "value", &value, &size)) return NULL;
  if (!arg_xattr_flags(env, argv[3], &flags)) return NULL;
  if (fsetxattr(fd, name, value, size, flags) != 0)
    return throw_sys_fd(env, errno, "fsetxattr");
  return NULL;
}

static napi_value host_lremovexattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  path_arg path;
  char name[XATTR_NAME_MAX + 1];
  if (!arg_path(env, argv[0], "path", "lremovexattr", &path)) return NULL;
  if (!arg_xattr_name(env, argv[1], "lremovexattr", &path, name)) return NULL;
  if (path_removexattr(&path, name) != 0)
    return PATH_ERROR(errno, "lremovexattr", path);
  return NULL;
}

static napi_value host_fremovexattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  int fd;
  char name[XATTR_NAME_MAX + 1];
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_xattr_name(env, argv[1], "fremovexattr", NULL, name)) return NULL;
  if (fremovexattr(fd, name) != 0)
    return throw_sys_fd(env, errno, "fremovexattr");
  return NULL;
}

/* ---- data ---- */

static napi_value host_lseek(napi_env env, napi_callback_info info) {
  ARGS(3);
  int fd;
  int64_t offset, whence;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_integer(env, argv[1], "offset", -SAFE_INT_MAX, SAFE_INT_MAX,
                   &offset))
    return NULL;
  if (!arg_integer(env, argv[2], "whence", 0, INT32_MAX, &whence))
    return NULL;
  off_t result = lseek(fd, (off_t)offset, (int)whence);
  if (result < 0) return throw_sys_fd(env, errno, "lseek");
  return make_number(env, (double)result);
}

static napi_value host_copy_file_range(napi_env env,
                                       napi_callback_info info) {
  ARGS(5);
  int fd_in, fd_out;
  int64_t off_in, off_out, length;
  if (!arg_fd(env, argv[0], "fdIn", &fd_in)) return NULL;
  if (!arg_integer(env, argv[1], "offIn", 0, SAFE_INT_MAX, &off_in))
    return NULL;
  if (!arg_fd(env, argv[2], "fdOut", &fd_out)) return NULL;
  if (!arg_integer(env, argv[3], "offOut", 0, SAFE_INT_MAX, &off_out))
    return NULL;
  if (!arg_integer(env, argv[4], "len", 0, SAFE_INT_MAX, &length))
    return NULL;
  loff_t in = (loff_t)off_in, out = (loff_t)off_out;
  ssize_t copied;
  do {
    copied = copy_file_range(fd_in, &in, fd_out, &out, (size_t)length, 0);
  } while (copied < 0 && errno == EINTR);
  if (copied < 0) return throw_sys_fd(env, errno, "copy_file_range");
  return make_number(env, (double)copied);
}

static napi_value host_ficlone(napi_env env, napi_callback_info info) {
  ARGS(2);
  int dest_fd, src_fd;
  if (!arg_fd(env, argv[0], "destFd", &dest_fd)) return NULL;
  if (!arg_fd(env, argv[1], "srcFd", &src_fd)) return NULL;
  if (ioctl(dest_fd, FICLONE, src_fd) != 0)
    return throw_sys_fd(env, errno, "ioctl_ficlone");
  return NULL;
}

/* ---- file handles (overlayfs origin records) ---- */

/* name_to_handle_at without following a final symlink: returns
 * { type, handle } where handle holds the filesystem's fid bytes. */
static napi_value host_name_to_handle(napi_env env, napi_callback_info info) {
  ARGS(1);
  path_arg path;
  if (!arg_path(env, argv[0], "path", "name_to_handle_at", &path)) return NULL;
  union {
    struct file_handle fh;
    char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  } buf;
  buf.fh.handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (name_to_handle_at(path.dirfd, path.rel, &buf.fh, &mount_id, 0) != 0)
    return PATH_ERROR(errno, "name_to_handle_at", path);
  napi_value result, type, handle;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, buf.fh.handle_type, &type));
  CHECK(napi_create_buffer_copy(env, buf.fh.handle_bytes, buf.fh.f_handle,
                                NULL, &handle));
  CHECK(napi_set_named_property(env, result, "type", type));
  CHECK(napi_set_named_property(env, result, "handle", handle));
  return result;
}

/* open_by_handle_at(mountFd, {type, handle}, flags): needs
 * CAP_DAC_READ_SEARCH. */
static napi_value host_open_by_handle(napi_env env, napi_callback_info info) {
  ARGS(4);
  int mount_fd;
  int64_t type, flags;
  void *data;
  size_t length;
  if (!arg_fd(env, argv[0], "mountFd", &mount_fd)) return NULL;
  if (!arg_integer(env, argv[1], "type", INT32_MIN, INT32_MAX, &type))
    return NULL;
  if (!arg_bytes(env, argv[2], "handle", &data, &length)) return NULL;
  if (!arg_integer(env, argv[3], "flags", INT32_MIN, INT32_MAX, &flags))
    return NULL;
  if (length > MAX_HANDLE_SZ) return throw_sys_fd(env, EINVAL, "open_by_handle_at");
  union {
    struct file_handle fh;
    char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  } buf;
  buf.fh.handle_bytes = (unsigned int)length;
  buf.fh.handle_type = (int)type;
  memcpy(buf.fh.f_handle, data, length);
  int fd = open_by_handle_at(mount_fd, &buf.fh, (int)flags | O_CLOEXEC);
  if (fd < 0) return throw_sys_fd(env, errno, "open_by_handle_at");
  return make_number(env, fd);
}

/* FS_IOC_GETFSUUID: the filesystem's UUID as a Buffer (empty when the
 * filesystem reports none). */
static napi_value host_fs_uuid(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  struct fsuuid2 uuid;
  memset(&uuid, 0, sizeof(uuid));
  if (ioctl(fd, FS_IOC_GETFSUUID, &uuid) != 0)
    return throw_sys_fd(env, errno, "ioctl_getfsuuid");
  napi_value result;
  size_t len = uuid.len > sizeof(uuid.uuid) ? sizeof(uuid.uuid) : uuid.len;
  CHECK(napi_create_buffer_copy(env, len, uuid.uuid, NULL, &result));
  return result;
}

static napi_value host_pread(napi_env env, napi_callback_info info) {
  ARGS(3);
  int fd;
  void *data;
  size_t length;
  int64_t offset;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_bytes(env, argv[1], "buf", &data, &length)) return NULL;
  if (!arg_integer(env, argv[2], "offset", 0, SAFE_INT_MAX, &offset))
    return NULL;
  ssize_t count;
  do {
    count = pread(fd, data, length, (off_t)offset);
  } while (count < 0 && errno == EINTR);
  if (count < 0) return throw_sys_fd(env, errno, "pread");
  return make_number(env, (double)count);
}

static napi_value host_pwrite(napi_env env, napi_callback_info info) {
  ARGS(3);
  int fd;
  void *data;
  size_t length;
  int64_t offset;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!arg_bytes(env, argv[1], "buf", &data, &length)) return NULL;
  if (!arg_integer(env, argv[2], "offset", 0, SAFE_INT_MAX, &offset))
    return NULL;
  ssize_t count;
  do {
    count = pwrite(fd, data, length, (off_t)offset);
  } while (count < 0 && errno == EINTR);
  if (count < 0) return throw_sys_fd(env, errno, "pwrite");
  return make_number(env, (double)count);
}

static napi_value host_fsync(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (fsync(fd) != 0) return throw_sys_fd(env, errno, "fsync");
  return NULL;
}

static napi_value host_fdatasync(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (fdatasync(fd) != 0) return throw_sys_fd(env, errno, "fdatasync");
  return NULL;
}

/* True if "@N" paths use the *xattrat syscalls, false on the /proc
 * fallback. */
static napi_value host_xattrat_in_use(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK(napi_get_boolean(env, use_xattrat, &result));
  return result;
}

/* ---- module ---- */

typedef struct {
  const char *name;
  napi_callback callback;
} function_entry;

typedef struct {
  const char *name;
  double value;
} constant_entry;

static const function_entry functions[] = {
    {"lstat", host_lstat},
    {"fstat", host_fstat},
    {"statvfs", host_statvfs},
    {"readdir", host_readdir},
    {"tryLstat", host_try_lstat},
    {"nameToHandle", host_name_to_handle},
    {"openByHandle", host_open_by_handle},
    {"fsUuid", host_fs_uuid},
    {"tryLgetxattr", host_try_lgetxattr},
    {"open", host_open},
    {"close", host_close},
    {"mkdir", host_mkdir},
    {"mknod", host_mknod},
    {"symlink", host_symlink},
    {"readlink", host_readlink},
    {"unlink", host_unlink},
    {"rmdir", host_rmdir},
    {"link", host_link},
    {"rename", host_rename},
    {"chmod", host_chmod},
    {"fchmod", host_fchmod},
    {"lchown", host_lchown},
    {"fchown", host_fchown},
    {"utimens", host_utimens},
    {"futimens", host_futimens},
    {"truncate", host_truncate},
    {"ftruncate", host_ftruncate},
    {"lgetxattr", host_lgetxattr},
    {"fgetxattr", host_fgetxattr},
    {"llistxattr", host_llistxattr},
    {"flistxattr", host_flistxattr},
    {"lsetxattr", host_lsetxattr},
    {"fsetxattr", host_fsetxattr},
    {"lremovexattr", host_lremovexattr},
    {"fremovexattr", host_fremovexattr},
    {"lseek", host_lseek},
    {"copyFileRange", host_copy_file_range},
    {"ficlone", host_ficlone},
    {"pread", host_pread},
    {"pwrite", host_pwrite},
    {"fsync", host_fsync},
    {"fdatasync", host_fdatasync},
    {"xattratInUse", host_xattrat_in_use},
};

#define CONSTANT(name) {#name, (double)(name)}

static const constant_entry constants[] = {
    CONSTANT(UTIME_NOW),       CONSTANT(UTIME_OMIT),
    CONSTANT(RENAME_NOREPLACE), CONSTANT(RENAME_EXCHANGE),
    CONSTANT(RENAME_WHITEOUT), CONSTANT(XATTR_CREATE),
    CONSTANT(XATTR_REPLACE),   CONSTANT(SEEK_SET),
    CONSTANT(SEEK_CUR),        CONSTANT(SEEK_END),
    CONSTANT(SEEK_DATA),       CONSTANT(SEEK_HOLE),
    CONSTANT(AT_SYMLINK_NOFOLLOW),
    CONSTANT(S_IFMT),          CONSTANT(S_IFDIR),
    CONSTANT(S_IFREG),         CONSTANT(S_IFLNK),
    CONSTANT(S_IFCHR),         CONSTANT(S_IFBLK),
    CONSTANT(S_IFIFO),         CONSTANT(S_IFSOCK),
    CONSTANT(DT_UNKNOWN),      CONSTANT(DT_DIR),
    CONSTANT(DT_REG),          CONSTANT(DT_LNK),
    CONSTANT(DT_CHR),          CONSTANT(DT_BLK),
    CONSTANT(DT_FIFO),         CONSTANT(DT_SOCK),
    CONSTANT(O_RDONLY),        CONSTANT(O_WRONLY),
    CONSTANT(O_RDWR),          CONSTANT(O_ACCMODE),
    CONSTANT(O_CREAT),         CONSTANT(O_EXCL),
    CONSTANT(O_TRUNC),         CONSTANT(O_APPEND),
    CONSTANT(O_NOFOLLOW),      CONSTANT(O_DIRECTORY),
    CONSTANT(O_CLOEXEC),       CONSTANT(O_PATH),
    CONSTANT(O_NONBLOCK),      CONSTANT(O_NOATIME),
    CONSTANT(PATH_MAX),        CONSTANT(XATTR_NAME_MAX),
};

static napi_value init(napi_env env, napi_value exports) {
  init_xattrat();
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    CHECK(napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH,
                               functions[i].callback, NULL, &fn));
    CHECK(napi_set_named_property(env, exports, functions[i].name, fn));
  }
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
    napi_value value;
    CHECK(napi_create_double(env, constants[i].value, &value));
    CHECK(napi_set_named_property(env, exports, constants[i].name, value));
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
