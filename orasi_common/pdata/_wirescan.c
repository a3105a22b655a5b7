/*
 * The fields of many protobuf messages in one call (see orasi_common/pdata/protoscan.py).
 *
 * scan(data, starts, ends) walks the messages data[starts[i]:ends[i]] (starts and ends are
 * buffers of int64) and returns one bytes object holding five int64 columns, one value per
 * field, fields in message order and wire order within a message:
 *
 *     message index, tag (field number << 3 | wire type), payload start, payload end, value
 *
 * where the payload of a LEN field excludes its length prefix and value is the decoded varint
 * or the little-endian fixed64/fixed32 bits (0 for LEN). Every read is bounds-checked against
 * the message's end; groups (legal only as unknown fields) are skipped; anything that is not
 * valid protobuf (truncated fields, field number 0 outside a group, unknown wire types) raises ValueError naming
 * the message and offset.
 *
 * gather(data, starts, ends) returns the slices data[starts[i]:ends[i]] concatenated; group(data,
 * starts, ends, parents, n) the same slices gathered per parent, and codes(data, offsets, valid,
 * seed) a code per distinct string (see their comments).
 *
 * validate(data, program) checks one message as upb would parse it, with the invariants of
 * orasi_common/pdata/validate.py, and counts its items (see its section below).
 *
 * key_values(data, offsets) cuts canonical KeyValue messages apart (see its section below).
 *
 * join(n, parts) writes n messages from columns, field after field (the OTAP decoder's writer,
 * see its section below).
 *
 * text_lines(data, cut, limit) and cri_heads(data, starts, ends) read the lines of a log file's
 * block and the heads of its CRI lines (the filelog receiver's columns, see their section below).
 *
 * Dictionary(seed) holds the growing dictionary of one column of an OTAP stream, with its hash
 * table, and encodes string columns against it (the stream producer's; see its section below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The records of a scan, column by column: pass one only counts (columns == NULL), pass two
 * fills columns[k * count + i] for the i-th field. */
typedef struct {
    int64_t *columns;
    Py_ssize_t count, len;
} Records;

#define WIDTH 5
#define MAX_GROUP_DEPTH 100

static void push(Records *r, int64_t msg, uint64_t tag, int64_t start, int64_t end, uint64_t value) {
    if (r->columns != NULL) {
        int64_t *out = r->columns + r->len;
        out[0] = msg;
        out[r->count] = (int64_t)tag;
        out[2 * r->count] = start;
        out[3 * r->count] = end;
        out[4 * r->count] = (int64_t)value;
    }
    r->len++;
}

/* A varint of at most max_bytes bytes (10 for values; 5 for tags and lengths, as upb). */
static int varint(const uint8_t *data, Py_ssize_t *pos, Py_ssize_t end, uint64_t *out, int max_bytes) {
    uint64_t value = 0;
    Py_ssize_t p = *pos;
    for (int i = 0; i < max_bytes && p < end; i++) {
        uint8_t byte = data[p++];
        value |= (uint64_t)(byte & 0x7F) << (7 * i);
        if (byte < 0x80) {
            *pos = p;
            *out = value;
            return 0;
        }
    }
    return -1;
}

/* Skips a group's fields up to and including its end-group tag (groups may nest, each closed
 * by the end tag of its own field number, at most `limit` deep, this one included). Inside a
 * group field number 0 is accepted, as upb accepts it there (not outside one). */
static int skip_group(const uint8_t *data, Py_ssize_t *pos, Py_ssize_t end, uint64_t number, int limit) {
    uint64_t open[MAX_GROUP_DEPTH];
    int depth = 0;
    if (limit < 1 || limit > MAX_GROUP_DEPTH) return -1;
    open[depth++] = number;
    Py_ssize_t p = *pos;
    while (depth > 0) {
        uint64_t tag, ignored;
        if (varint(data, &p, end, &tag, 5) < 0) return -1;
        switch (tag & 7) {
            case 0:
                if (varint(data, &p, end, &ignored, 10) < 0) return -1;
                break;
            case 1:
                if (end - p < 8) return -1;
                p += 8;
                break;
            case 5:
                if (end - p < 4) return -1;
                p += 4;
                break;
            case 2:
                if (varint(data, &p, end, &ignored, 5) < 0 || ignored > (uint64_t)(end - p)) return -1;
                p += (Py_ssize_t)ignored;
                break;
            case 3:
                if (depth >= limit) return -1;
                open[depth++] = tag >> 3;
                break;
            case 4:
                if (open[--depth] != (tag >> 3)) return -1;
                break;
            default:
                return -1;
        }
    }
    *pos = p;
    return 0;
}

static uint64_t little_endian(const uint8_t *data, int width) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (width == 8) {
        uint64_t value;
        memcpy(&value, data, 8);
        return value;
    }
#endif
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; i--) value = (value << 8) | data[i];
    return value;
}

typedef struct {
    Py_ssize_t msg, offset;
    const char *why;
} Failure;

static int malformed(Failure *failure, Py_ssize_t msg, Py_ssize_t offset, const char *why) {
    failure->msg = msg;
    failure->offset = offset;
    failure->why = why;
    return -1;
}

/* Runs without the GIL: touches only its arguments and raw memory. */
static int scan_messages(const uint8_t *data, Py_ssize_t size, const int64_t *starts, const int64_t *ends,
                         Py_ssize_t n, Records *r, Failure *f) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t p = (Py_ssize_t)starts[i], end = (Py_ssize_t)ends[i];
        if (p < 0 || end < p || end > size) return malformed(f, i, p, "the message lies outside the data");
        while (p < end) {
            Py_ssize_t at = p;
            uint64_t tag, value = 0;
            if (varint(data, &p, end, &tag, 5) < 0) return malformed(f, i, at, "a truncated or over-long field tag");
            uint64_t number = tag >> 3;
            int wire_type = (int)(tag & 7);
            if (number == 0 || number > 536870911u) return malformed(f, i, at, "an invalid field number");
            Py_ssize_t start = p;
            switch (wire_type) {
                case 0:
                    if (varint(data, &p, end, &value, 10) < 0) return malformed(f, i, at, "a truncated varint");
                    break;
                case 1:
                case 5: {
                    int width = wire_type == 1 ? 8 : 4;
                    if (end - p < width) return malformed(f, i, at, "a truncated fixed-width field");
                    value = little_endian(data + p, width);
                    p += width;
                    break;
                }
                case 2: {
                    uint64_t length;
                    if (varint(data, &p, end, &length, 5) < 0) return malformed(f, i, at, "a truncated or over-long length");
                    if (length > (uint64_t)(end - p)) return malformed(f, i, at, "a length past the message's end");
                    start = p;
                    p += (Py_ssize_t)length;
                    break;
                }
                case 3: /* a group (only unknown fields can be groups in proto3): skipped */
                    if (skip_group(data, &p, end, number, MAX_GROUP_DEPTH) < 0) return malformed(f, i, at, "a malformed group");
                    continue;
                default:
                    return malformed(f, i, at, "an end of group without its start, or an unknown wire type");
            }
            push(r, i, tag, start, p, value);
        }
    }
    return 0;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer data, starts, ends;
    if (!PyArg_ParseTuple(args, "y*y*y*", &data, &starts, &ends)) return NULL;
    PyObject *result = NULL;
    if (starts.len != ends.len || starts.len % (Py_ssize_t)sizeof(int64_t) != 0) {
        PyErr_SetString(PyExc_ValueError, "starts and ends must be int64 buffers of the same length");
    } else {
        const uint8_t *bytes = (const uint8_t *)data.buf;
        const int64_t *s = (const int64_t *)starts.buf, *e = (const int64_t *)ends.buf;
        Py_ssize_t n = starts.len / (Py_ssize_t)sizeof(int64_t);
        Records records = {NULL, 0, 0};
        Failure failure = {0, 0, NULL};
        int status;
        Py_BEGIN_ALLOW_THREADS;
        status = scan_messages(bytes, data.len, s, e, n, &records, &failure); /* count */
        Py_END_ALLOW_THREADS;
        if (status == 0) {
            records.count = records.len;
            result = PyBytes_FromStringAndSize(NULL, WIDTH * records.count * (Py_ssize_t)sizeof(int64_t));
            if (result != NULL) {
                records.columns = (int64_t *)PyBytes_AS_STRING(result);
                records.len = 0;
                Py_BEGIN_ALLOW_THREADS;
                scan_messages(bytes, data.len, s, e, n, &records, &failure); /* fill: same input, cannot fail */
                Py_END_ALLOW_THREADS;
            }
        } else {
            PyErr_Format(PyExc_ValueError, "message %zd, byte %zd: %s", failure.msg, failure.offset, failure.why);
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&ends);
    return result;
}

static PyObject *gather(PyObject *self, PyObject *args) {
    Py_buffer data, starts, ends;
    if (!PyArg_ParseTuple(args, "y*y*y*", &data, &starts, &ends)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = starts.len / (Py_ssize_t)sizeof(int64_t), total = 0;
    const int64_t *s = starts.buf, *e = ends.buf;
    int ok = starts.len == ends.len && starts.len % (Py_ssize_t)sizeof(int64_t) == 0;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        ok = 0 <= s[i] && s[i] <= e[i] && e[i] <= data.len;
        total += e[i] - s[i];
    }
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "a slice lies outside the data");
    } else if ((result = PyBytes_FromStringAndSize(NULL, total)) != NULL) {
        char *out = PyBytes_AS_STRING(result);
        const char *in = data.buf;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(out, in + s[i], (size_t)(e[i] - s[i]));
            out += e[i] - s[i];
        }
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&ends);
    return result;
}

/* group(data, starts, ends, parents, n): the slices data[starts[i]:ends[i]] (int64 buffers)
 * gathered per parent, parents[i] (int64) naming slice i's parent in 0..n-1: a stable counting
 * sort, one memcpy per slice. Returns (offsets, grouped): n + 1 int64 offsets of each parent's
 * bytes in grouped, which holds each parent's slices in their input order. A slice outside the
 * data or a parent outside 0..n-1 raises ValueError before anything is written. */
static PyObject *group(PyObject *self, PyObject *args) {
    Py_buffer data, starts, ends, parents;
    Py_ssize_t groups;
    if (!PyArg_ParseTuple(args, "y*y*y*y*n", &data, &starts, &ends, &parents, &groups)) return NULL;
    PyObject *result = NULL, *offsets = NULL, *grouped = NULL;
    int64_t *cursor = NULL;
    Py_ssize_t n = starts.len / (Py_ssize_t)sizeof(int64_t), total = 0;
    const int64_t *s = starts.buf, *e = ends.buf, *p = parents.buf;
    int ok = groups >= 0 && starts.len == ends.len && starts.len == parents.len &&
             starts.len % (Py_ssize_t)sizeof(int64_t) == 0;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        ok = 0 <= s[i] && s[i] <= e[i] && e[i] <= data.len && 0 <= p[i] && p[i] < groups &&
             total <= PY_SSIZE_T_MAX - (e[i] - s[i]);
        total += e[i] - s[i];
    }
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "a slice lies outside the data or a parent outside the groups");
        goto done;
    }
    if ((offsets = PyBytes_FromStringAndSize(NULL, (groups + 1) * (Py_ssize_t)sizeof(int64_t))) == NULL) goto done;
    if ((grouped = PyBytes_FromStringAndSize(NULL, total)) == NULL) goto done;
    if ((cursor = PyMem_Malloc((size_t)(groups ? groups : 1) * sizeof(int64_t))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t *off = (int64_t *)PyBytes_AS_STRING(offsets);
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(grouped);
    const uint8_t *in = data.buf;
    Py_BEGIN_ALLOW_THREADS;
    memset(off, 0, (size_t)(groups + 1) * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < n; i++) off[p[i] + 1] += e[i] - s[i];
    for (Py_ssize_t g = 0; g < groups; g++) off[g + 1] += off[g];
    memcpy(cursor, off, (size_t)groups * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < n; i++) {
        memcpy(out + cursor[p[i]], in + s[i], (size_t)(e[i] - s[i]));
        cursor[p[i]] += e[i] - s[i];
    }
    Py_END_ALLOW_THREADS;
    result = PyTuple_Pack(2, offsets, grouped);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(grouped);
    PyMem_Free(cursor);
    PyBuffer_Release(&data);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&ends);
    PyBuffer_Release(&parents);
    return result;
}

/* codes(data, offsets, valid, seed): a code for each byte string data[offsets[i]:offsets[i + 1]]
 * (n + 1 int32 offsets): equal strings get equal codes, numbered 0, 1, ... in order of first
 * appearance (as Arrow's dictionary_encode numbers them); a row whose valid byte (n of them) is
 * 0 gets -1 and takes no code. Returns (codes, firsts): n int64 codes, and for each code the row
 * where it first appears. The strings come from senders, so the hash is keyed by seed (drawn at
 * random once per process) against collisions chosen in advance. An offset outside the data
 * (of a valid row) raises ValueError before anything is hashed. */
static uint64_t string_hash(const uint8_t *s, Py_ssize_t len, uint64_t seed) {
    uint64_t h = seed ^ ((uint64_t)len * 0x9E3779B97F4A7C15ULL), word;
    for (; len >= 8; s += 8, len -= 8) {
        memcpy(&word, s, 8);
        h = (h ^ word) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    /* the last 1-7 bytes without a variable-length copy (a call, and a store the load below
     * must wait for, costing more than the whole hash of a short string): overlapping reads,
     * which with the length mixed in above still tell apart any two strings of one length */
    if (len >= 4) {
        uint32_t low, high;
        memcpy(&low, s, 4);
        memcpy(&high, s + len - 4, 4);
        word = (uint64_t)low | (uint64_t)high << 32;
    } else if (len > 0) {
        word = (uint64_t)s[0] | (uint64_t)s[len >> 1] << 8 | (uint64_t)s[len - 1] << 16;
    } else {
        word = 0;
    }
    h = (h ^ word) * 0x94D049BB133111EBULL;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 32);
}

static PyObject *codes(PyObject *self, PyObject *args) {
    Py_buffer data, offsets, valid;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "y*y*y*K", &data, &offsets, &valid, &seed)) return NULL;
    PyObject *result = NULL, *out = NULL, *firsts = NULL;
    int64_t *slots = NULL;
    uint64_t *hashes = NULL;
    Py_ssize_t n = offsets.len / (Py_ssize_t)sizeof(int32_t) - 1, count = 0;
    const int32_t *off = offsets.buf;
    const uint8_t *ok = valid.buf, *bytes = data.buf;
    int fine = offsets.len % (Py_ssize_t)sizeof(int32_t) == 0 && n >= 0 && valid.len >= n;
    for (Py_ssize_t i = 0; fine && i < n; i++)
        fine = !ok[i] || (0 <= off[i] && off[i] <= off[i + 1] && off[i + 1] <= data.len);
    if (!fine) {
        PyErr_SetString(PyExc_ValueError, "codes: the offsets do not cover the rows or lie outside the data");
        goto done;
    }
    size_t capacity = 16;
    while (capacity < 2 * (size_t)n) capacity <<= 1;
    slots = PyMem_Malloc(capacity * sizeof(int64_t)); /* a code, -1 while empty */
    hashes = PyMem_Malloc(capacity * sizeof(uint64_t));
    if (slots == NULL || hashes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if ((out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t))) == NULL) goto done;
    if ((firsts = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t))) == NULL) goto done;
    int64_t *code = (int64_t *)PyBytes_AS_STRING(out), *first = (int64_t *)PyBytes_AS_STRING(firsts);
    Py_BEGIN_ALLOW_THREADS;
    memset(slots, 0xff, capacity * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!ok[i]) {
            code[i] = -1;
            continue;
        }
        const uint8_t *s = bytes + off[i];
        Py_ssize_t len = off[i + 1] - off[i];
        uint64_t h = string_hash(s, len, (uint64_t)seed);
        size_t at = (size_t)h & (capacity - 1);
        for (;; at = (at + 1) & (capacity - 1)) {
            int64_t c = slots[at];
            if (c < 0) { /* a new string */
                slots[at] = count;
                hashes[at] = h;
                first[count] = i;
                code[i] = count++;
                break;
            }
            const int64_t row = first[c];
            if (hashes[at] == h && off[row + 1] - off[row] == len && memcmp(bytes + off[row], s, (size_t)len) == 0) {
                code[i] = c;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS;
    if (_PyBytes_Resize(&firsts, count * (Py_ssize_t)sizeof(int64_t)) == 0) result = PyTuple_Pack(2, out, firsts);
done:
    Py_XDECREF(out);
    Py_XDECREF(firsts);
    PyMem_Free(slots);
    PyMem_Free(hashes);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&valid);
    return result;
}

/* Skips one field of a non-group wire type after its tag; -1 when malformed or unknown. */
static int skip_field(const uint8_t *data, Py_ssize_t *pos, Py_ssize_t end, uint64_t tag) {
    uint64_t ignored;
    switch (tag & 7) {
        case 0:
            return varint(data, pos, end, &ignored, 10);
        case 1:
        case 5: {
            Py_ssize_t width = (tag & 7) == 1 ? 8 : 4;
            if (end - *pos < width) return -1;
            *pos += width;
            return 0;
        }
        case 2:
            if (varint(data, pos, end, &ignored, 5) < 0 || ignored > (uint64_t)(end - *pos)) return -1;
            *pos += (Py_ssize_t)ignored;
            return 0;
        default:
            return -1;
    }
}

/* ---- validate: what upb accepts for a request type, the invariants, and the item count ----
 *
 * validate(data, program) walks a serialized message against a schema compiled by
 * orasi_common/pdata/validate.py from the generated descriptors, accepting exactly what upb's
 * parser accepts for that type, and returns (items, violation): items counts the occurrences
 * of fields marked ITEM (spans, log records, data points) as the parsed message would hold them,
 * and violation is None or the first broken invariant in wire order as (path, (type, field),
 * value), path a tuple of (type, field, occurrence) from the root (occurrence -1 for a singular
 * field). Bytes that upb would refuse raise ValueError saying what was wrong and where, even
 * after a violation (the walk goes on to the end).
 *
 * program (int32): [type count T, offset of type 0 .. T-1, types...], type 0 the root; each type
 * [largest field number N, oneof count, then N + 1 entries of ENTRY_WIDTH indexed by field
 * number]:
 *   kind | flags   KIND_* (0: no such field), REPEATED, ITEM, and from bit WIRE_SHIFT the wire
 *                 types it accepts: its own, and LEN for a repeated scalar (packed)
 *   argument      MESSAGE: the child's type; BYTES: the id width it must have (0: any)
 *   rule          -1, or 0 when the field has an invariant: BYTES a length of 0 or the
 *                 argument, FIXED64 a value below 2^63 (a time)
 *   oneof         -1, or the field's oneof (0 .. oneof count - 1; only oneofs that can hold
 *                 items are listed): a field of another case replaces the parsed value, so
 *                 only the last case's items count
 *
 * upb's rules, each checked against python's protobuf: a field whose wire type is not its
 * declared one (LEN also allowed for repeated scalars: packed) is an unknown field, skipped by
 * its wire type; groups are skipped (skip_group); field number 0 is refused outside a group;
 * string fields must be valid UTF-8; packed fixed-width lengths must be multiples of the width
 * and packed varints well-formed; a message nests at most MAX_DEPTH messages and groups below
 * the root (groups inside a message at depth d at most MAX_DEPTH - d deep). */
#define ENTRY_WIDTH 4
#define KIND_VARINT 1
#define KIND_FIXED64 2
#define KIND_FIXED32 3
#define KIND_STRING 4
#define KIND_BYTES 5
#define KIND_MESSAGE 6
#define KIND_MASK 15
#define FLAG_REPEATED 16
#define FLAG_ITEM 32
#define WIRE_SHIFT 8 /* bits 8..15: the wire types the field accepts (1 << wire type) */
#define MAX_DEPTH 100
#define MAX_FIELD 64
#define MAX_ONEOFS 8

typedef struct {
    const int32_t *entries; /* field number → entry */
    uint32_t largest;       /* field number */
    int oneofs;
} Type;

typedef struct {
    const int32_t *program;
    Py_ssize_t length;
    const uint8_t *data;
    Type *types;            /* program's types, unpacked */
    /* the messages being walked: where each starts, and the field holding the next one */
    int32_t path_type[MAX_DEPTH + 1], path_field[MAX_DEPTH + 1], path_repeated[MAX_DEPTH + 1];
    Py_ssize_t path_start[MAX_DEPTH + 1], path_at[MAX_DEPTH + 1];
    /* the first violation */
    int bad_depth;
    int32_t bad_type, bad_field;
    uint64_t bad_value;
    int32_t bad_path_type[MAX_DEPTH + 1], bad_path_field[MAX_DEPTH + 1], bad_path_repeated[MAX_DEPTH + 1];
    Py_ssize_t bad_path_start[MAX_DEPTH + 1], bad_path_at[MAX_DEPTH + 1];
    /* or the first malformation */
    const char *malformed;
    Py_ssize_t offset;
} Walk;

static int refuse(Walk *w, Py_ssize_t offset, const char *why) {
    w->malformed = why;
    w->offset = offset;
    return -1;
}

static void violation(Walk *w, int depth, int32_t type, int32_t field, uint64_t value) {
    if (w->bad_depth >= 0) return;
    w->bad_depth = depth;
    w->bad_type = type;
    w->bad_field = field;
    w->bad_value = value;
    memcpy(w->bad_path_type, w->path_type, sizeof(int32_t) * (size_t)depth);
    memcpy(w->bad_path_field, w->path_field, sizeof(int32_t) * (size_t)depth);
    memcpy(w->bad_path_repeated, w->path_repeated, sizeof(int32_t) * (size_t)depth);
    memcpy(w->bad_path_start, w->path_start, sizeof(Py_ssize_t) * (size_t)depth);
    memcpy(w->bad_path_at, w->path_at, sizeof(Py_ssize_t) * (size_t)depth);
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), as upb checks. */
static int valid_utf8(const uint8_t *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        while (i + 8 <= n) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if (word & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (n - i < 3 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F)) return 0;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (n - i < 4 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F)) return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* The items of data[p:end], a message of `type` at `depth` (the root: 0), or -1. */
static int64_t walk_message(Walk *w, Py_ssize_t p, Py_ssize_t end, int32_t type, int depth) {
    const uint8_t *data = w->data;
    const Type *t = w->types + type; /* checked by valid_program */
    uint32_t largest = t->largest;
    int oneofs = t->oneofs;
    const int32_t *entries = t->entries;
    int64_t total = 0, oneof_items[MAX_ONEOFS];
    int32_t oneof_case[MAX_ONEOFS];
    Py_ssize_t start = p;
    for (int k = 0; k < oneofs; k++) oneof_case[k] = -1, oneof_items[k] = 0;
    while (p < end) {
        Py_ssize_t field_at = p;
        uint64_t tag, value;
        if (data[p] < 0x80) {
            tag = data[p++]; /* p < end */
        } else {
            if (varint(data, &p, end, &tag, 5) < 0) return refuse(w, field_at, "a truncated or over-long field tag");
            if ((tag >> 3) > 536870911u) return refuse(w, field_at, "a field number past 2^29 - 1");
        }
        uint64_t number = tag >> 3;
        int wire = (int)(tag & 7);
        if (number == 0) return refuse(w, field_at, "field number 0");
        if (wire == 3) {
            if (depth >= MAX_DEPTH || skip_group(data, &p, end, number, MAX_DEPTH - depth) < 0)
                return refuse(w, field_at, "a malformed group, or groups nested too deeply");
            continue;
        }
        const int32_t *entry = entries + (number <= largest ? number : 0) * ENTRY_WIDTH; /* 0: no field */
        int32_t flags = entry[0];
        if (!((flags >> (WIRE_SHIFT + wire)) & 1)) { /* unknown, or a known field with another wire type */
            if (wire == 4) return refuse(w, field_at, "an end of group without its start");
            if (wire > 5) return refuse(w, field_at, "an unknown wire type");
            if (skip_field(data, &p, end, tag) < 0)
                return refuse(w, field_at, "a field (unknown here) truncated or running past the end of its message");
            continue;
        }
        int kind = flags & KIND_MASK, repeated = (flags & FLAG_REPEATED) != 0;
        int packed = wire == 2 && kind <= KIND_FIXED32;
        int32_t oneof = entry[3];
        if (wire != 2) {
            if (wire == 0) {
                if (varint(data, &p, end, &value, 10) < 0)
                    return refuse(w, field_at, "a truncated or over-long varint");
            } else {
                int width = wire == 1 ? 8 : 4;
                if (end - p < width) return refuse(w, field_at, "a truncated fixed-width field");
                value = little_endian(data + p, width);
                p += width;
                if (kind == KIND_FIXED64 && entry[2] >= 0 && value > (uint64_t)INT64_MAX)
                    violation(w, depth, type, (int32_t)number, value);
            }
            if (oneof >= 0 && oneof_case[oneof] != (int32_t)number) { /* a scalar case: no items */
                oneof_case[oneof] = (int32_t)number;
                oneof_items[oneof] = 0;
            }
            continue;
        }
        uint64_t length;
        if (p < end && data[p] < 0x80) length = data[p++];
        else if (varint(data, &p, end, &length, 5) < 0) return refuse(w, field_at, "a truncated or over-long length");
        if (length > (uint64_t)(end - p)) return refuse(w, field_at, "a length past the end of its message");
        Py_ssize_t inner = p;
        p += (Py_ssize_t)length;
        int64_t items = 0;
        if (packed) {
            if (kind == KIND_VARINT) {
                while (inner < p) {
                    if (varint(data, &inner, p, &value, 10) < 0)
                        return refuse(w, field_at, "a packed varint field with a truncated or over-long varint");
                }
            } else if (length % (kind == KIND_FIXED64 ? 8 : 4) != 0) {
                return refuse(w, field_at, "a packed fixed-width field whose length is not a multiple of the width");
            }
        } else if (kind == KIND_STRING) {
            if (!valid_utf8(data + inner, (Py_ssize_t)length))
                return refuse(w, field_at, "a string field with bad UTF-8");
        } else if (kind == KIND_BYTES) {
            if (entry[2] >= 0 && length != 0 && length != (uint64_t)entry[1])
                violation(w, depth, type, (int32_t)number, length);
        } else if (kind == KIND_MESSAGE) {
            if (depth >= MAX_DEPTH) return refuse(w, field_at, "messages nested more than 100 deep");
            w->path_type[depth] = type;
            w->path_field[depth] = (int32_t)number;
            w->path_repeated[depth] = repeated;
            w->path_start[depth] = start;
            w->path_at[depth] = field_at;
            items = walk_message(w, inner, p, entry[1], depth + 1);
            if (items < 0) return -1;
        }
        if (entry[0] & FLAG_ITEM) items = 1;
        if (oneof >= 0) {
            if (oneof_case[oneof] != (int32_t)number) { /* another case replaces the value */
                oneof_case[oneof] = (int32_t)number;
                oneof_items[oneof] = 0;
            }
            oneof_items[oneof] += items;
        } else {
            total += items;
        }
    }
    for (int k = 0; k < oneofs; k++) total += oneof_items[k];
    return total;
}

/* Whether program is a schema table walk_message can trust: every offset, child and oneof in range. */
static int valid_program(const int32_t *program, Py_ssize_t length) {
    if (length < 2 || program[0] < 1 || program[0] >= length) return 0;
    for (int32_t type = 0; type < program[0]; type++) {
        int32_t at = program[1 + type];
        if (at < 1 + program[0] || at + 2 > length || program[at] < 0 || program[at] >= MAX_FIELD
            || program[at + 1] < 0 || program[at + 1] > MAX_ONEOFS
            || at + 2 + (Py_ssize_t)(program[at] + 1) * ENTRY_WIDTH > length)
            return 0;
        const int32_t *entries = program + at + 2;
        for (int32_t number = 0; number <= program[at]; number++) {
            const int32_t *entry = entries + number * ENTRY_WIDTH;
            int kind = entry[0] & KIND_MASK;
            static const int wire_of[] = {0, 0, 1, 5, 2, 2, 2};
            int32_t accepts = kind == 0 || kind > KIND_MESSAGE ? 0 : 1 << wire_of[kind];
            if ((entry[0] & FLAG_REPEATED) && kind >= KIND_VARINT && kind <= KIND_FIXED32)
                accepts |= 1 << 2; /* packed */
            if (kind > KIND_MESSAGE || (entry[0] >> WIRE_SHIFT) != accepts || (number == 0 && kind != 0)
                || entry[3] < -1 || entry[3] >= program[at + 1]
                || (kind == KIND_MESSAGE && (entry[1] < 0 || entry[1] >= program[0])))
                return 0;
        }
    }
    return 1;
}

/* The LEN fields numbered `number` in data[p:at], bytes already walked (for a violation's path). */
static Py_ssize_t occurrences(const uint8_t *data, Py_ssize_t p, Py_ssize_t at, uint64_t number) {
    Py_ssize_t count = 0;
    while (p < at) {
        uint64_t tag;
        if (varint(data, &p, at, &tag, 5) < 0) break;
        if ((tag & 7) == 3) {
            if (skip_group(data, &p, at, tag >> 3, MAX_GROUP_DEPTH) < 0) break;
            continue;
        }
        if (tag == ((number << 3) | 2)) count++;
        if (skip_field(data, &p, at, tag) < 0) break;
    }
    return count;
}

static PyObject *validate(PyObject *self, PyObject *args) {
    Py_buffer data, program;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &program)) return NULL;
    PyObject *result = NULL;
    Walk *w = PyMem_Malloc(sizeof(Walk)); /* its paths are written before they are read */
    Type *types = NULL;
    if (w == NULL) {
        PyErr_NoMemory();
    } else if (program.len % (Py_ssize_t)sizeof(int32_t) != 0
               || !valid_program((const int32_t *)program.buf, program.len / (Py_ssize_t)sizeof(int32_t))) {
        PyErr_SetString(PyExc_ValueError, "the program is not a valid int32 schema table");
    } else if ((types = PyMem_Malloc(sizeof(Type) * (size_t)((const int32_t *)program.buf)[0])) == NULL) {
        PyErr_NoMemory();
    } else {
        w->program = (const int32_t *)program.buf;
        for (int32_t i = 0; i < w->program[0]; i++) {
            int32_t at = w->program[1 + i];
            types[i].largest = (uint32_t)w->program[at];
            types[i].oneofs = w->program[at + 1];
            types[i].entries = w->program + at + 2;
        }
        w->types = types;
        w->length = program.len / (Py_ssize_t)sizeof(int32_t);
        w->data = (const uint8_t *)data.buf;
        w->bad_depth = -1;
        w->malformed = NULL;
        int64_t items;
        Py_BEGIN_ALLOW_THREADS;
        items = walk_message(w, 0, data.len, 0, 0);
        Py_END_ALLOW_THREADS;
        if (items < 0) {
            PyErr_Format(PyExc_ValueError, "%s (at byte %zd)", w->malformed, w->offset);
        } else if (w->bad_depth < 0) {
            result = Py_BuildValue("(LO)", (long long)items, Py_None);
        } else {
            PyObject *path = PyTuple_New(w->bad_depth);
            for (int i = 0; path != NULL && i < w->bad_depth; i++) {
                int32_t number = w->bad_path_field[i];
                Py_ssize_t occurrence = w->bad_path_repeated[i]
                    ? occurrences(w->data, w->bad_path_start[i], w->bad_path_at[i], (uint64_t)number) : -1;
                PyObject *step = Py_BuildValue("(iin)", (int)w->bad_path_type[i], (int)number, occurrence);
                if (step == NULL) Py_CLEAR(path);
                else PyTuple_SET_ITEM(path, i, step);
            }
            if (path != NULL)
                result = Py_BuildValue("(L(N(ii)K))", (long long)items, path, (int)w->bad_type, (int)w->bad_field,
                                       (unsigned long long)w->bad_value);
        }
    }
    PyMem_Free(types);
    PyMem_Free(w);
    PyBuffer_Release(&data);
    PyBuffer_Release(&program);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * join(n, parts): n messages assembled field by field (see orasi_common/pdata/otap/wire.py).
 *
 * Each part is a tuple (kind, tag, emit, a, b, width) describing one field of every row:
 * emit holds n bytes (non-zero: row i writes the field), tag the field's key bytes, and
 *
 *     JOIN_VARINT  a: n uint64 values            row i writes tag, varint(a[i])
 *     JOIN_FIXED   a: n values of width bytes    row i writes tag, a[i] (little-endian already)
 *     JOIN_BYTES   a: n + 1 int32 offsets into b row i writes tag, varint(len), b[a[i]:a[i+1]]
 *     JOIN_RAW     as JOIN_BYTES                 row i writes b[a[i]:a[i+1]] (no tag, no length)
 *
 * Returns (offsets, data): n + 1 int64 offsets of each row's bytes in data. Every buffer's size
 * and every offset is checked before anything is written (ValueError otherwise). */
enum { JOIN_VARINT, JOIN_FIXED, JOIN_BYTES, JOIN_RAW };

typedef struct {
    int kind;
    Py_buffer tag, emit, a, b;
    Py_ssize_t width;
} Part;

static Py_ssize_t varint_size(uint64_t v) {
    Py_ssize_t size = 1;
    while (v >= 0x80) {
        v >>= 7;
        size++;
    }
    return size;
}

static uint8_t *put_varint(uint8_t *out, uint64_t v) {
    while (v >= 0x80) {
        *out++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *out++ = (uint8_t)v;
    return out;
}

static const char *check_part(const Part *p, Py_ssize_t n) {
    if (p->kind < JOIN_VARINT || p->kind > JOIN_RAW) return "unknown part kind";
    if (p->emit.len < n) return "emit is shorter than the rows";
    if (p->kind == JOIN_VARINT && p->a.len < n * (Py_ssize_t)sizeof(uint64_t)) return "too few varint values";
    if (p->kind == JOIN_FIXED && (p->width <= 0 || p->width > 8 || p->a.len < n * p->width))
        return "too few fixed-width values";
    if (p->kind == JOIN_BYTES || p->kind == JOIN_RAW) {
        if (p->a.len < (n + 1) * (Py_ssize_t)sizeof(int32_t)) return "too few offsets";
        const int32_t *off = p->a.buf;
        const uint8_t *emit = p->emit.buf;
        for (Py_ssize_t i = 0; i < n; i++)
            if (emit[i] && (off[i] < 0 || off[i] > off[i + 1] || off[i + 1] > p->b.len)) return "an offset lies outside the data";
    }
    return NULL;
}

static Py_ssize_t part_size(const Part *p, Py_ssize_t i) {
    if (!((const uint8_t *)p->emit.buf)[i]) return 0;
    switch (p->kind) {
    case JOIN_VARINT:
        return p->tag.len + varint_size(((const uint64_t *)p->a.buf)[i]);
    case JOIN_FIXED:
        return p->tag.len + p->width;
    case JOIN_BYTES: {
        const int32_t *off = p->a.buf;
        Py_ssize_t len = off[i + 1] - off[i];
        return p->tag.len + varint_size((uint64_t)len) + len;
    }
    default: {
        const int32_t *off = p->a.buf;
        return off[i + 1] - off[i];
    }
    }
}

static uint8_t *part_write(const Part *p, Py_ssize_t i, uint8_t *out) {
    if (!((const uint8_t *)p->emit.buf)[i]) return out;
    if (p->kind != JOIN_RAW) {
        memcpy(out, p->tag.buf, (size_t)p->tag.len);
        out += p->tag.len;
    }
    switch (p->kind) {
    case JOIN_VARINT:
        return put_varint(out, ((const uint64_t *)p->a.buf)[i]);
    case JOIN_FIXED:
        memcpy(out, (const uint8_t *)p->a.buf + i * p->width, (size_t)p->width);
        return out + p->width;
    default: {
        const int32_t *off = p->a.buf;
        Py_ssize_t len = off[i + 1] - off[i];
        if (p->kind == JOIN_BYTES) out = put_varint(out, (uint64_t)len);
        memcpy(out, (const uint8_t *)p->b.buf + off[i], (size_t)len);
        return out + len;
    }
    }
}

static PyObject *join(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "nO!", &n, &PyList_Type, &list)) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative row count");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(list), parsed = 0;
    Part *parts = PyMem_Calloc((size_t)(count ? count : 1), sizeof(Part));
    PyObject *result = NULL, *offsets = NULL, *data = NULL;
    if (parts == NULL) return PyErr_NoMemory();
    for (; parsed < count; parsed++) {
        Part *p = &parts[parsed];
        if (!PyArg_ParseTuple(PyList_GET_ITEM(list, parsed), "iy*y*y*y*n", &p->kind, &p->tag, &p->emit, &p->a,
                              &p->b, &p->width))
            goto done;
        const char *why = check_part(p, n);
        if (why != NULL) {
            PyBuffer_Release(&p->tag);
            PyBuffer_Release(&p->emit);
            PyBuffer_Release(&p->a);
            PyBuffer_Release(&p->b);
            PyErr_Format(PyExc_ValueError, "join part %zd: %s", parsed, why);
            goto done;
        }
    }
    if ((offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * (Py_ssize_t)sizeof(int64_t))) == NULL) goto done;
    int64_t *off = (int64_t *)PyBytes_AS_STRING(offsets);
    Py_BEGIN_ALLOW_THREADS;
    off[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size = 0;
        for (Py_ssize_t k = 0; k < count; k++) size += part_size(&parts[k], i);
        off[i + 1] = off[i] + size;
    }
    Py_END_ALLOW_THREADS;
    if ((data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)off[n])) == NULL) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(data);
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t k = 0; k < count; k++) out = part_write(&parts[k], i, out);
    Py_END_ALLOW_THREADS;
    result = PyTuple_Pack(2, offsets, data);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    for (Py_ssize_t k = 0; k < parsed; k++) {
        PyBuffer_Release(&parts[k].tag);
        PyBuffer_Release(&parts[k].emit);
        PyBuffer_Release(&parts[k].a);
        PyBuffer_Release(&parts[k].b);
    }
    PyMem_Free(parts);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * key_values(data, offsets): the KeyValue messages data[offsets[i]:offsets[i + 1]] (n + 1 int32
 * offsets) cut apart when they have the canonical shape protobuf serializers write (see
 * orasi_common/pdata/otap/value_scan.py): field 1 (the key, 1..127 bytes), then field 2 (the
 * AnyValue, a length of one or two bytes) holding nothing or one string (1), int (3), double (4),
 * bool (2, 0 or 1) or bytes (7) field, minimal varints, lengths of at most two bytes, the key and
 * a string valid UTF-8 (a row with bad UTF-8 is left to upb, which refuses it).
 *
 * Returns seven int64 columns of n values: key start, key end, OTAP type code (0: empty value
 * or not canonical), payload start, payload end (of a string or bytes value), the value's 64
 * bits (int, double bits, bool), and 1 for a row that is not canonical (left to upb). Nothing is
 * read outside a row. */
static int kv_length(const uint8_t *d, Py_ssize_t *p, Py_ssize_t end, Py_ssize_t *len) {
    if (*p >= end) return -1;
    uint8_t b1 = d[(*p)++];
    if (b1 < 0x80) {
        *len = b1;
        return 0;
    }
    if (*p >= end) return -1;
    uint8_t b2 = d[(*p)++];
    if (b2 == 0 || b2 >= 0x80) return -1;
    *len = (Py_ssize_t)(b1 & 0x7F) | ((Py_ssize_t)b2 << 7);
    return 0;
}

/* One row: 0 when canonical (out filled), -1 otherwise. */
static int key_value(const uint8_t *d, Py_ssize_t s, Py_ssize_t e, int64_t *out) {
    if (e - s < 2 || d[s] != 0x0A) return -1;
    Py_ssize_t key_len = d[s + 1];
    if (key_len == 0 || key_len >= 0x80 || s + 2 + key_len > e || !valid_utf8(d + s + 2, key_len)) return -1;
    Py_ssize_t p = s + 2 + key_len, value_len;
    if (p >= e || d[p] != 0x12) return -1;
    p++;
    if (kv_length(d, &p, e, &value_len) < 0 || p + value_len != e) return -1;
    out[0] = s + 2;
    out[1] = s + 2 + key_len;
    if (p == e) return 0; /* an empty AnyValue: type 0 */
    uint8_t tag = d[p++];
    Py_ssize_t len;
    switch (tag) {
    case 0x0A: /* string */
    case 0x3A: /* bytes */
        if (kv_length(d, &p, e, &len) < 0 || p + len != e || (tag == 0x0A && !valid_utf8(d + p, len))) return -1;
        out[2] = tag == 0x0A ? 1 : 7;
        out[3] = p;
        out[4] = e;
        return 0;
    case 0x10: /* bool */
        if (e - p != 1 || d[p] > 1) return -1;
        out[2] = 4;
        out[5] = d[p];
        return 0;
    case 0x21: /* double */
        if (e - p != 8) return -1;
        out[2] = 3;
        out[5] = (int64_t)little_endian(d + p, 8);
        return 0;
    case 0x18: { /* int */
        uint64_t value = 0;
        Py_ssize_t i = 0;
        for (; i < 10 && p + i < e; i++) {
            value |= (uint64_t)(d[p + i] & 0x7F) << (7 * i);
            if (d[p + i] < 0x80) break;
        }
        if (i == 10 || p + i >= e || p + i + 1 != e || (i > 0 && d[p + i] == 0)) return -1;
        out[2] = 2;
        out[5] = (int64_t)value;
        return 0;
    }
    default:
        return -1;
    }
}

static PyObject *key_values(PyObject *self, PyObject *args) {
    Py_buffer data, offsets;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &offsets)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = offsets.len / (Py_ssize_t)sizeof(int32_t) - 1;
    const int32_t *off = offsets.buf;
    int ok = offsets.len % (Py_ssize_t)sizeof(int32_t) == 0 && n >= 0;
    for (Py_ssize_t i = 0; ok && i < n; i++) ok = 0 <= off[i] && off[i] <= off[i + 1] && off[i + 1] <= data.len;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "an offset lies outside the data");
    } else if ((result = PyBytes_FromStringAndSize(NULL, 7 * n * (Py_ssize_t)sizeof(int64_t))) != NULL) {
        int64_t *columns = (int64_t *)PyBytes_AS_STRING(result);
        const uint8_t *d = data.buf;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t row[6] = {off[i], off[i], 0, off[i + 1], off[i + 1], 0};
            int slow = key_value(d, off[i], off[i + 1], row) < 0;
            if (slow) {
                row[0] = row[1] = off[i];
                row[2] = row[5] = 0;
                row[3] = row[4] = off[i + 1];
            }
            for (int k = 0; k < 6; k++) columns[k * n + i] = row[k];
            columns[6 * n + i] = slow;
        }
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * The lines of a log file's block and their CRI heads (orasi_common/receivers/filelog/cri.py,
 * whose per-line reading in parse.py is the reference these are held to).
 *
 * text_lines(data, cut, limit): the lines of data[:cut] as bytes.split(b"\n") gives them
 * (without a last empty one), each longer than limit bytes cut there without splitting a UTF-8
 * character (whole_characters) and then right-stripped of b" \t\n\r\v\f" as bytes.rstrip does.
 * Returns (too_long, columns): the count of lines cut, and three int64 columns of n values:
 * start, end (cut and stripped), the offset just past the line's newline (cut + 1 for a last
 * line without one).
 *
 * cri_heads(data, starts, ends): the head of each line data[starts[i]:ends[i]] (int64 buffers)
 * when it has the layout containerd and CRI-O write,
 *
 *     YYYY-MM-DDTHH:MM:SS[.d{1,9}](Z|+HH:MM|-HH:MM) (stdout|stderr) (P|F)[ message]
 *
 * with a real date (the Gregorian calendar's month lengths, leap years), hours 0-23, minutes and
 * seconds 0-59, a zone of at most 23:59 and a time from the epoch to below 2^63 ns. Returns a
 * bytearray (written to by the caller for the other lines) of three int64 columns, then two
 * byte columns, of n values: the message's start (ends[i] when the line stops after its tag),
 * the time in ns since the epoch, the stream (0 stdout, 1 stderr), 1 for a P tag, and 1 for a
 * line of that layout (regular). Another line gets message = start, time 0, stream -1,
 * partial 0 and regular 0, and is left to the per-line reading. Nothing is read outside a line.
 */
#define IS_DIGIT(c) ((unsigned)((c) - '0') <= 9u)
#define TWO_DIGITS(p) (((p)[0] - '0') * 10 + ((p)[1] - '0'))
#define MAX_SECONDS INT64_C(9223372036) /* (2^63 - 1) // 10^9: times in ns that fit int64 */

static int is_whitespace(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* The end of data[start:end] (a line cut short) without the bytes of a UTF-8 character that the
 * cut split (at most 3; bytes that are not UTF-8 to begin with are left as they are). */
static Py_ssize_t whole_characters(const uint8_t *d, Py_ssize_t start, Py_ssize_t end) {
    for (Py_ssize_t back = 1; back <= 4 && back <= end - start; back++) {
        uint8_t byte = d[end - back];
        if (byte < 0x80) return end; /* ASCII: nothing split */
        if (byte >= 0xC0) {          /* the first byte of a character of 2, 3 or 4 bytes */
            Py_ssize_t need = byte < 0xE0 ? 2 : byte < 0xF0 ? 3 : 4;
            return back >= need ? end : end - back;
        }
    }
    return end;
}

static PyObject *text_lines(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t cut, limit;
    if (!PyArg_ParseTuple(args, "y*nn", &data, &cut, &limit)) return NULL;
    PyObject *columns = NULL, *result = NULL;
    if (cut < 0 || cut > data.len || limit < 0) {
        PyErr_SetString(PyExc_ValueError, "cut must lie inside the data and limit must not be negative");
        goto done;
    }
    const uint8_t *d = data.buf;
    Py_ssize_t n = 0, too_long = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t p = 0; p < cut; n++) {
        const uint8_t *newline = memchr(d + p, '\n', (size_t)(cut - p));
        p = newline == NULL ? cut : newline - d + 1;
    }
    Py_END_ALLOW_THREADS;
    if (n > PY_SSIZE_T_MAX / (3 * (Py_ssize_t)sizeof(int64_t))) {
        PyErr_NoMemory();
        goto done;
    }
    if ((columns = PyBytes_FromStringAndSize(NULL, 3 * n * (Py_ssize_t)sizeof(int64_t))) == NULL) goto done;
    int64_t *starts = (int64_t *)PyBytes_AS_STRING(columns), *ends = starts + n, *offsets = ends + n;
    Py_BEGIN_ALLOW_THREADS;
    Py_ssize_t p = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *newline = memchr(d + p, '\n', (size_t)(cut - p));
        Py_ssize_t stop = newline == NULL ? cut : newline - d, end = stop;
        if (end - p > limit) {
            end = whole_characters(d, p, p + limit);
            too_long++;
        }
        while (end > p && is_whitespace(d[end - 1])) end--;
        starts[i] = p;
        ends[i] = end;
        offsets[i] = stop + 1;
        p = stop + 1;
    }
    Py_END_ALLOW_THREADS;
    result = Py_BuildValue("nO", too_long, columns);
done:
    Py_XDECREF(columns);
    PyBuffer_Release(&data);
    return result;
}

static int leap_year(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* The last date and time to the minute read (a line's first 16 bytes, "YYYY-MM-DDTHH:MM"): the
 * lines of one minute share it, and it is read once for them. */
typedef struct {
    uint8_t text[16];
    int valid; /* -1: nothing read yet; 0: not a time in range; 1: seconds holds its time */
    int64_t seconds;
} Minute;

/* The seconds from the epoch to the minute of line[0:16] (Minute.valid says whether it is one). */
static void read_minute(const uint8_t *line, Minute *minute) {
    static const char layout[] = "dddd-dd-ddTdd:dd";
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    memcpy(minute->text, line, 16);
    minute->valid = 0;
    for (int k = 0; k < 16; k++)
        if (layout[k] == 'd' ? !IS_DIGIT(line[k]) : line[k] != (uint8_t)layout[k]) return;
    int64_t year = TWO_DIGITS(line) * 100 + TWO_DIGITS(line + 2);
    int month = TWO_DIGITS(line + 5), day = TWO_DIGITS(line + 8), hour = TWO_DIGITS(line + 11);
    int minutes = TWO_DIGITS(line + 14);
    if (month < 1 || month > 12 || hour > 23 || minutes > 59) return;
    if (day < 1 || day > month_days[month - 1] + (month == 2 && leap_year(year))) return;
    minute->seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minutes * 60;
    minute->valid = 1;
}

/* One line's head (see above): 1 and its fields when it has the layout, else 0. */
static int cri_head(const uint8_t *line, Py_ssize_t len, Minute *minute, Py_ssize_t *message, int64_t *time,
                    int64_t *stream, uint8_t *partial) {
    if (len < 29) return 0; /* "<20-byte time> stdout F" at least */
    if (minute->valid < 0 || memcmp(line, minute->text, 16) != 0) read_minute(line, minute);
    if (!minute->valid || line[16] != ':' || !IS_DIGIT(line[17]) || !IS_DIGIT(line[18])) return 0;
    int second = TWO_DIGITS(line + 17);
    if (second > 59) return 0;
    Py_ssize_t k = 19;
    int64_t fraction = 0;
    if (line[k] == '.') { /* 1-9 digits, read as nanoseconds */
        int digits = 0;
        for (k++; k < len && IS_DIGIT(line[k]) && digits <= 9; k++, digits++)
            if (digits < 9) fraction = fraction * 10 + (line[k] - '0');
        if (digits < 1 || digits > 9) return 0;
        for (; digits < 9; digits++) fraction *= 10;
    }
    int64_t offset = 0; /* seconds east of UTC */
    if (k < len && line[k] == 'Z') {
        k++;
    } else if (k < len && (line[k] == '+' || line[k] == '-')) {
        if (len - k < 6 || !IS_DIGIT(line[k + 1]) || !IS_DIGIT(line[k + 2]) || line[k + 3] != ':' ||
            !IS_DIGIT(line[k + 4]) || !IS_DIGIT(line[k + 5]))
            return 0;
        int hours = TWO_DIGITS(line + k + 1), minutes = TWO_DIGITS(line + k + 4);
        if (hours > 23 || minutes > 59) return 0;
        offset = (line[k] == '-' ? -60 : 60) * (hours * 60 + minutes);
        k += 6;
    } else {
        return 0;
    }
    if (len - k < 9) return 0; /* " stdout F" */
    int64_t code;
    if (memcmp(line + k, " stdout ", 8) == 0)
        code = 0;
    else if (memcmp(line + k, " stderr ", 8) == 0)
        code = 1;
    else
        return 0;
    uint8_t tag = line[k + 8];
    if (tag != 'P' && tag != 'F') return 0;
    k += 9;
    if (k < len && line[k] != ' ') return 0;
    int64_t seconds = minute->seconds + second - offset;
    if (seconds < 0 || seconds >= MAX_SECONDS) return 0;
    *message = k < len ? k + 1 : len;
    *time = seconds * 1000000000 + fraction;
    *stream = code;
    *partial = tag == 'P';
    return 1;
}

static PyObject *cri_heads(PyObject *self, PyObject *args) {
    Py_buffer data, starts, ends;
    if (!PyArg_ParseTuple(args, "y*y*y*", &data, &starts, &ends)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = starts.len / (Py_ssize_t)sizeof(int64_t);
    const int64_t *s = starts.buf, *e = ends.buf;
    int ok = starts.len == ends.len && starts.len % (Py_ssize_t)sizeof(int64_t) == 0;
    for (Py_ssize_t i = 0; ok && i < n; i++) ok = 0 <= s[i] && s[i] <= e[i] && e[i] <= data.len;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "a line lies outside the data");
    } else if (n > PY_SSIZE_T_MAX / (3 * (Py_ssize_t)sizeof(int64_t) + 2)) {
        PyErr_NoMemory();
    } else if ((result = PyByteArray_FromStringAndSize(NULL, n * (3 * (Py_ssize_t)sizeof(int64_t) + 2))) != NULL) {
        int64_t *message = (int64_t *)PyByteArray_AS_STRING(result), *time = message + n, *stream = time + n;
        uint8_t *partial = (uint8_t *)(stream + n), *regular = partial + n;
        const uint8_t *d = data.buf;
        Minute minute = {{0}, -1, 0};
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t at = 0;
            int64_t line_time = 0, line_stream = -1;
            uint8_t line_partial = 0;
            regular[i] = (uint8_t)cri_head(d + s[i], (Py_ssize_t)(e[i] - s[i]), &minute, &at, &line_time,
                                           &line_stream, &line_partial);
            message[i] = s[i] + at;
            time[i] = line_time;
            stream[i] = line_stream;
            partial[i] = line_partial;
        }
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&ends);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * Dictionary(seed): the distinct strings that one column of an OTAP stream has sent, numbered in
 * order of first appearance, with their hash table kept from call to call (the stream producer's
 * growing dictionaries: pyarrow's index_in would hash the whole dictionary again every batch).
 *
 * encode(validity, offsets, data, offset, length, limit, width) takes an Arrow string column's
 * buffers (validity: its bitmap, or None when no row is null; offsets: int32; the rows are
 * offset .. offset + length - 1) and returns (indices, bitmap, new_offsets, new_data): each
 * row's number in the dictionary as `width` (1 or 2) little-endian bytes (0 for a null row), the
 * rows' validity as a fresh bitmap from bit 0 with the bits past the last row clear (None when
 * validity is None), and the values that the column added to the dictionary, in order of first
 * appearance, as an Arrow string array's int32 offsets (from 0) and data. It returns None and
 * leaves the dictionary as it was when the column would take it past `limit` values (at most
 * 256 for width 1, 65536 for width 2, and no fewer than it holds). Strings come from senders,
 * so the hash is string_hash keyed by seed; the rows, the bitmap and the offsets of valid rows
 * are checked against their buffers before anything is hashed (ValueError). The work runs
 * without the GIL; a second thread calling encode on the same dictionary meanwhile gets
 * RuntimeError. len() is the number of values. */
typedef struct {
    PyObject_HEAD
    uint64_t seed;
    uint8_t *bytes;         /* the values' bytes, back to back */
    size_t used, room;      /* of bytes */
    size_t *starts;         /* count + 1 offsets into bytes */
    uint64_t *hashes;       /* of each value */
    size_t count, capacity; /* values, and the room of hashes (starts: capacity + 1) */
    int32_t *slots;         /* the hash table: a value's number, -1 while empty */
    size_t mask;            /* slots - 1 (a power of two); 0 before the first table */
    int busy;
} Dictionary;

enum { FILLED, REFUSED, NO_MEMORY, OUTSIDE };

static void dictionary_dealloc(PyObject *op) {
    Dictionary *d = (Dictionary *)op;
    PyTypeObject *type = Py_TYPE(op);
    PyMem_RawFree(d->bytes);
    PyMem_RawFree(d->starts);
    PyMem_RawFree(d->hashes);
    PyMem_RawFree(d->slots);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyObject *dictionary_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    unsigned long long seed;
    static char *names[] = {"seed", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "K:Dictionary", names, &seed)) return NULL;
    Dictionary *d = (Dictionary *)type->tp_alloc(type, 0);
    if (d == NULL) return NULL;
    d->seed = (uint64_t)seed;
    if ((d->starts = PyMem_RawCalloc(1, sizeof(size_t))) == NULL) {
        Py_DECREF(d);
        return PyErr_NoMemory();
    }
    return (PyObject *)d;
}

static Py_ssize_t dictionary_len(PyObject *op) { return (Py_ssize_t)((Dictionary *)op)->count; }

/* Room for `values` values with the table at most half full; -1 when out of memory (the
 * dictionary unchanged). Raw allocators only: runs without the GIL. */
static int dictionary_reserve(Dictionary *d, size_t values) {
    if (values > d->capacity) {
        size_t *starts = PyMem_RawRealloc(d->starts, (values + 1) * sizeof(size_t));
        if (starts == NULL) return -1;
        d->starts = starts;
        uint64_t *hashes = PyMem_RawRealloc(d->hashes, values * sizeof(uint64_t));
        if (hashes == NULL) return -1;
        d->hashes = hashes;
        d->capacity = values;
    }
    size_t size = 16;
    while (size < 2 * values) size <<= 1;
    if (d->slots != NULL && d->mask + 1 >= size) return 0;
    int32_t *slots = PyMem_RawMalloc(size * sizeof(int32_t));
    if (slots == NULL) return -1;
    memset(slots, 0xff, size * sizeof(int32_t));
    for (size_t v = 0; v < d->count; v++) {
        size_t at = (size_t)d->hashes[v] & (size - 1);
        while (slots[at] >= 0) at = (at + 1) & (size - 1);
        slots[at] = (int32_t)v;
    }
    PyMem_RawFree(d->slots);
    d->slots = slots;
    d->mask = size - 1;
    return 0;
}

/* Forgets the values numbered `count` and above, newest first: each one's probe path then still
 * holds the older values it passed when it was put in, so it is found where it was put (linear
 * probing, and nothing else is ever removed). */
static void dictionary_truncate(Dictionary *d, size_t count) {
    while (d->count > count) {
        size_t v = --d->count, at = (size_t)d->hashes[v] & d->mask;
        while (d->slots[at] != (int32_t)v) at = (at + 1) & d->mask;
        d->slots[at] = -1;
    }
    d->used = d->starts[count];
}

/* Whether a[0:len] == b[0:len], inline: most values are short, and a call to memcmp would cost as
 * much as hashing them. */
static int same_bytes(const uint8_t *a, const uint8_t *b, size_t len) {
    uint64_t x, y;
    for (; len >= 8; a += 8, b += 8, len -= 8) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return 0;
    }
    for (; len > 0; a++, b++, len--)
        if (*a != *b) return 0;
    return 1;
}

static int32_t offset_at(const uint8_t *offsets, Py_ssize_t row) {
    int32_t value;
    memcpy(&value, offsets + 4 * row, 4);
    return value;
}

/* The number of the value s[0:len] (hash h), added as a new one when it is not held: FILLED, or
 * REFUSED when `limit` values are held, NO_MEMORY (the dictionary unchanged either way). */
static int dictionary_number(Dictionary *d, const uint8_t *s, size_t len, size_t limit, size_t *number) {
    const uint64_t h = string_hash(s, (Py_ssize_t)len, d->seed);
    size_t at = (size_t)h & d->mask;
    for (int32_t v; (v = d->slots[at]) >= 0; at = (at + 1) & d->mask) {
        if (d->hashes[v] == h && d->starts[v + 1] - d->starts[v] == len && same_bytes(d->bytes + d->starts[v], s, len)) {
            *number = (size_t)v;
            return FILLED;
        }
    }
    if (d->count >= limit) return REFUSED;
    if (d->used + len > d->room) {
        size_t room = d->room < 64 ? 64 : 2 * d->room;
        if (room < d->used + len) room = d->used + len;
        uint8_t *bytes = PyMem_RawRealloc(d->bytes, room);
        if (bytes == NULL) return NO_MEMORY;
        d->bytes = bytes;
        d->room = room;
    }
    if (len > 0) memcpy(d->bytes + d->used, s, len);
    d->used += len;
    *number = d->count++;
    d->starts[d->count] = d->used;
    d->hashes[*number] = h;
    d->slots[at] = (int32_t)*number;
    return FILLED;
}

/* encode's work, without the GIL: FILLED, or REFUSED / NO_MEMORY / OUTSIDE with the dictionary
 * as it was. A row equal to the last valid one (sorted columns repeat) is not hashed again. */
static int dictionary_fill(Dictionary *d, const uint8_t *bits, const uint8_t *offsets, const uint8_t *data,
                           Py_ssize_t size, Py_ssize_t offset, Py_ssize_t length, size_t limit, int width,
                           uint8_t *out, uint8_t *bitmap) {
    for (Py_ssize_t r = offset; r < offset + length; r++) {
        if (bits != NULL && !(bits[r >> 3] >> (r & 7) & 1)) continue;
        int32_t start = offset_at(offsets, r), end = offset_at(offsets, r + 1);
        if (start < 0 || start > end || end > size) return OUTSIDE;
    }
    size_t most = d->count + (size_t)length < limit ? d->count + (size_t)length : limit;
    if (dictionary_reserve(d, most) < 0) return NO_MEMORY;
    const size_t before = d->count;
    if (bitmap != NULL) memset(bitmap, 0, (size_t)(length + 7) / 8);
    const uint8_t *last = NULL;
    size_t last_len = 0, number = 0, last_number = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        const Py_ssize_t r = offset + i;
        number = 0; /* a null row's */
        if (bits == NULL || bits[r >> 3] >> (r & 7) & 1) {
            if (bitmap != NULL) bitmap[i >> 3] |= (uint8_t)(1u << (i & 7));
            const int32_t start = offset_at(offsets, r);
            const size_t len = (size_t)(offset_at(offsets, r + 1) - start);
            const uint8_t *s = data + start;
            if (last != NULL && len == last_len && same_bytes(s, last, len)) {
                number = last_number;
            } else {
                int outcome = dictionary_number(d, s, len, limit, &number);
                if (outcome != FILLED) {
                    dictionary_truncate(d, before);
                    return outcome;
                }
                last = s;
                last_len = len;
                last_number = number;
            }
        }
        if (width == 1) {
            out[i] = (uint8_t)number;
        } else {
            out[2 * i] = (uint8_t)(number & 0xff);
            out[2 * i + 1] = (uint8_t)(number >> 8);
        }
    }
    return FILLED;
}

static PyObject *dictionary_encode(PyObject *op, PyObject *args) {
    Dictionary *d = (Dictionary *)op;
    PyObject *validity_object, *result = NULL, *indices = NULL, *bitmap = NULL, *new_offsets = NULL, *new_data = NULL;
    Py_buffer validity = {0}, offsets, data;
    Py_ssize_t offset, length, limit;
    int width;
    if (!PyArg_ParseTuple(args, "Oy*y*nnni:encode", &validity_object, &offsets, &data, &offset, &length, &limit, &width))
        return NULL;
    if (validity_object != Py_None && PyObject_GetBuffer(validity_object, &validity, PyBUF_SIMPLE) < 0) goto done;
    const Py_ssize_t rows = offsets.len / 4;
    if (width != 1 && width != 2) {
        PyErr_SetString(PyExc_ValueError, "Dictionary.encode: the index width is 1 or 2 bytes");
        goto done;
    }
    if (limit < (Py_ssize_t)d->count || limit > ((Py_ssize_t)1 << (8 * width))) {
        PyErr_SetString(PyExc_ValueError, "Dictionary.encode: the limit is below the values held or past the index width");
        goto done;
    }
    if (offset < 0 || length < 0 || (length > 0 && (offset >= rows || length > rows - 1 - offset))) {
        PyErr_SetString(PyExc_ValueError, "Dictionary.encode: the rows lie outside the offsets");
        goto done;
    }
    if (validity_object != Py_None && length > 0 && (offset + length - 1) / 8 >= validity.len) {
        PyErr_SetString(PyExc_ValueError, "Dictionary.encode: the validity bitmap does not cover the rows");
        goto done;
    }
    if (d->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Dictionary.encode: the dictionary is in use by another thread");
        goto done;
    }
    if ((indices = PyBytes_FromStringAndSize(NULL, length * width)) == NULL) goto done;
    if (validity_object != Py_None && (bitmap = PyBytes_FromStringAndSize(NULL, (length + 7) / 8)) == NULL) goto done;
    const size_t before = d->count, first_byte = d->used;
    int outcome;
    d->busy = 1;
    Py_BEGIN_ALLOW_THREADS;
    outcome = dictionary_fill(d, validity_object == Py_None ? NULL : validity.buf, offsets.buf, data.buf, data.len,
                              offset, length, (size_t)limit, width, (uint8_t *)PyBytes_AS_STRING(indices),
                              bitmap == NULL ? NULL : (uint8_t *)PyBytes_AS_STRING(bitmap));
    Py_END_ALLOW_THREADS;
    d->busy = 0;
    if (outcome == REFUSED) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (outcome == NO_MEMORY) {
        PyErr_NoMemory();
        goto done;
    }
    if (outcome == OUTSIDE) {
        PyErr_SetString(PyExc_ValueError, "Dictionary.encode: a row's offsets lie outside the data");
        goto done;
    }
    const size_t added = d->count - before;
    new_offsets = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(4 * (added + 1)));
    new_data = PyBytes_FromStringAndSize((const char *)d->bytes + first_byte, (Py_ssize_t)(d->used - first_byte));
    if (new_offsets == NULL || new_data == NULL) {
        dictionary_truncate(d, before); /* the caller never learns of these values */
        goto done;
    }
    uint8_t *written = (uint8_t *)PyBytes_AS_STRING(new_offsets);
    for (size_t v = 0; v <= added; v++) { /* within the column's data, so int32 */
        int32_t at = (int32_t)(d->starts[before + v] - first_byte);
        memcpy(written + 4 * v, &at, 4);
    }
    result = PyTuple_Pack(4, indices, bitmap == NULL ? Py_None : bitmap, new_offsets, new_data);
    if (result == NULL) dictionary_truncate(d, before);
done:
    Py_XDECREF(indices);
    Py_XDECREF(bitmap);
    Py_XDECREF(new_offsets);
    Py_XDECREF(new_data);
    if (validity.obj != NULL) PyBuffer_Release(&validity);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef dictionary_methods[] = {
    {"encode", dictionary_encode, METH_VARARGS,
     "encode(validity, offsets, data, offset, length, limit, width) -> (indices, bitmap, new_offsets, new_data) "
     "or None past the limit (see the module source)"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot dictionary_slots[] = {
    {Py_tp_new, dictionary_new},
    {Py_tp_dealloc, dictionary_dealloc},
    {Py_tp_methods, dictionary_methods},
    {Py_sq_length, dictionary_len},
    {Py_tp_doc, "Dictionary(seed): the distinct strings of a stream's column, numbered in order of first appearance"},
    {0, NULL},
};

static PyType_Spec dictionary_spec = {
    "orasi_common.pdata._wirescan.Dictionary", sizeof(Dictionary), 0, Py_TPFLAGS_DEFAULT, dictionary_slots,
};

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "scan(data, starts, ends) -> bytes of int64 records (see the module source)"},
    {"gather", gather, METH_VARARGS, "gather(data, starts, ends) -> the slices concatenated"},
    {"codes", codes, METH_VARARGS, "codes(data, offsets, valid, seed) -> (int64 codes, int64 first rows)"},
    {"group", group, METH_VARARGS, "group(data, starts, ends, parents, n) -> (int64 offsets, the slices per parent)"},
    {"validate", validate, METH_VARARGS, "validate(data, program) -> (items, violation or None) (see the source)"},
    {"key_values", key_values, METH_VARARGS, "key_values(data, offsets) -> bytes of int64 columns (see the source)"},
    {"join", join, METH_VARARGS, "join(n, parts) -> (int64 offsets, data): messages assembled field by field"},
    {"text_lines", text_lines, METH_VARARGS, "text_lines(data, cut, limit) -> (too_long, bytes of int64 columns)"},
    {"cri_heads", cri_heads, METH_VARARGS, "cri_heads(data, starts, ends) -> bytearray of columns (see the source)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wirescan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__wirescan(void) {
    PyObject *m = PyModule_Create(&module), *type;
    if (m == NULL) return NULL;
    if ((type = PyType_FromSpec(&dictionary_spec)) == NULL || PyModule_AddObject(m, "Dictionary", type) < 0) {
        Py_XDECREF(type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
