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
 * gather(data, starts, ends) returns the slices data[starts[i]:ends[i]] concatenated.
 *
 * check(data, program) walks one message against the rules of ``program`` (compiled by
 * orasi_common/pdata/validate.py) and returns None, or the first violation in wire order as
 * (path, rule, value): path is a tuple of (rule, occurrence) pairs from the root (occurrence -1
 * for a singular field), rule the violated rule, value the offending length or number.
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
 * by the end tag of its own field number). Inside a group field number 0 is accepted, as upb
 * accepts it there (not outside one). */
static int skip_group(const uint8_t *data, Py_ssize_t *pos, Py_ssize_t end, uint64_t number) {
    uint64_t open[MAX_GROUP_DEPTH];
    int depth = 0;
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
                if (depth == MAX_GROUP_DEPTH) return -1;
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
                    if (skip_group(data, &p, end, number) < 0) return malformed(f, i, at, "a malformed group");
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

/* ---- check: invariants of selected fields, table-driven ----
 *
 * program (int64): [schema count S, offset of schema 0 .. S-1, schemas...], each schema
 * [rule count n, then n rules of RULE_WIDTH: field number, kind, argument, rule id]:
 *   RULE_ID       LEN field whose length must be 0 or the argument
 *   RULE_TIME     fixed64 field that must be below 2^63 (it becomes a signed nanosecond count)
 *   RULE_MESSAGE  LEN field holding a message of schema `argument`; repeated when the kind's
 *                 RULE_REPEATED bit is set (its path entry counts occurrences)
 * Fields without a rule, and ruled fields with another wire type (unknown to protobuf), are
 * skipped. Every occurrence of a ruled field is checked. */
#define RULE_WIDTH 4
#define RULE_ID 1
#define RULE_TIME 2
#define RULE_MESSAGE 3
#define RULE_REPEATED 16
#define MAX_RULES 32
#define MAX_CHECK_DEPTH 32

typedef struct {
    const int64_t *program;
    Py_ssize_t length;
    int depth;
    int64_t path_rule[MAX_CHECK_DEPTH], path_index[MAX_CHECK_DEPTH];
    int64_t bad_rule;
    uint64_t bad_value;
    const char *malformed; /* set when the bytes are not valid protobuf, or the program is bad */
} Check;

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
        case 3:
            return skip_group(data, pos, end, tag >> 3);
        default:
            return -1;
    }
}

static int check_message(const uint8_t *data, Py_ssize_t p, Py_ssize_t end, int64_t schema, Check *c) {
    const int64_t *program = c->program;
    if (schema < 0 || schema >= program[0] || c->depth >= MAX_CHECK_DEPTH) {
        c->malformed = c->depth >= MAX_CHECK_DEPTH ? "messages nested too deeply" : "a bad program";
        return -1;
    }
    int64_t at = program[1 + schema];
    if (at < 1 + program[0] || at >= c->length || program[at] < 0 || program[at] > MAX_RULES
        || at + 1 + program[at] * RULE_WIDTH > c->length) {
        c->malformed = "a bad program";
        return -1;
    }
    const int64_t *rules = program + at + 1;
    int64_t n = program[at], seen[MAX_RULES] = {0};
    while (p < end) {
        uint64_t tag;
        if (varint(data, &p, end, &tag, 5) < 0 || (tag >> 3) == 0) {
            c->malformed = "a truncated or invalid field tag";
            return -1;
        }
        int64_t r = 0;
        while (r < n && (uint64_t)rules[r * RULE_WIDTH] != (tag >> 3)) r++;
        int64_t kind = r < n ? rules[r * RULE_WIDTH + 1] : 0, base = kind & ~(int64_t)RULE_REPEATED;
        int wire = (int)(tag & 7);
        if (r == n || (base == RULE_TIME ? wire != 1 : wire != 2)) {
            if (skip_field(data, &p, end, tag) < 0) {
                c->malformed = "a truncated field";
                return -1;
            }
            continue;
        }
        const int64_t *rule = rules + r * RULE_WIDTH;
        if (base == RULE_TIME) {
            if (end - p < 8) {
                c->malformed = "a truncated fixed64 field";
                return -1;
            }
            uint64_t value = little_endian(data + p, 8);
            p += 8;
            if (value > (uint64_t)INT64_MAX) {
                c->bad_rule = rule[3];
                c->bad_value = value;
                return -1;
            }
            continue;
        }
        uint64_t length;
        if (varint(data, &p, end, &length, 5) < 0 || length > (uint64_t)(end - p)) {
            c->malformed = "a truncated length-delimited field";
            return -1;
        }
        Py_ssize_t inner = p;
        p += (Py_ssize_t)length;
        if (base == RULE_ID) {
            if (length != 0 && length != (uint64_t)rule[2]) {
                c->bad_rule = rule[3];
                c->bad_value = length;
                return -1;
            }
        } else if (base == RULE_MESSAGE) {
            c->path_rule[c->depth] = rule[3];
            c->path_index[c->depth] = (kind & RULE_REPEATED) ? seen[r] : -1;
            seen[r]++;
            c->depth++;
            if (check_message(data, inner, p, rule[2], c) < 0) return -1;
            c->depth--;
        } else {
            c->malformed = "a bad program";
            return -1;
        }
    }
    return 0;
}

static PyObject *check(PyObject *self, PyObject *args) {
    Py_buffer data, program;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &program)) return NULL;
    PyObject *result = NULL;
    Check c = {(const int64_t *)program.buf, program.len / (Py_ssize_t)sizeof(int64_t), 0, {0}, {0}, -1, 0, NULL};
    if (program.len % (Py_ssize_t)sizeof(int64_t) != 0 || c.length < 2 || c.program[0] < 1
        || c.program[0] >= c.length) {
        PyErr_SetString(PyExc_ValueError, "the program is not a valid int64 rule table");
    } else {
        int status;
        Py_BEGIN_ALLOW_THREADS;
        status = check_message((const uint8_t *)data.buf, 0, data.len, 0, &c);
        Py_END_ALLOW_THREADS;
        if (status == 0) {
            result = Py_NewRef(Py_None);
        } else if (c.malformed != NULL) {
            PyErr_Format(PyExc_ValueError, "%s", c.malformed);
        } else {
            PyObject *path = PyTuple_New(c.depth);
            for (int i = 0; path != NULL && i < c.depth; i++) {
                PyObject *step = Py_BuildValue("(LL)", (long long)c.path_rule[i], (long long)c.path_index[i]);
                if (step == NULL) Py_CLEAR(path);
                else PyTuple_SET_ITEM(path, i, step);
            }
            if (path != NULL) result = Py_BuildValue("(NLK)", path, (long long)c.bad_rule, (unsigned long long)c.bad_value);
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&program);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "scan(data, starts, ends) -> bytes of int64 records (see the module source)"},
    {"gather", gather, METH_VARARGS, "gather(data, starts, ends) -> the slices concatenated"},
    {"check", check, METH_VARARGS, "check(data, program) -> None or (path, rule, value) (see the module source)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wirescan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__wirescan(void) { return PyModule_Create(&module); }
