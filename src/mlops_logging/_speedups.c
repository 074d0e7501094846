/* Optional C speedups for logwrap's framer (mlops_logging._framer): classify and render a chunk of complete lines in one
 * pass, with no Python object per line.
 *
 * This is the same job as StreamFramer._fast_lines in pure Python, and the same contract: the output is byte-identical
 * to the exact line-by-line path, and anything that path must see itself (ESC, DEL, any CR, invalid UTF-8, a line
 * longer than max_line_bytes, a traceback start, a warnings header) makes render_lines return None. The property tests
 * in tests/unit/test_lines.py and tests/unit/test_speedups.py compare this module with the Python paths.
 *
 * The level grammar is not written here: _grammar.h is generated from the data in _levels.py by scripts/gen_grammar.py
 * (`make grammar`), and GRAMMAR_DIGEST says which data; the framer uses this module only when that digest is the one
 * _levels.py computes.
 *
 * Built by setuptools as an optional extension (like MarkupSafe's _speedups): without a C compiler the package installs
 * and runs on the pure-Python path. Public C API only, but _PyBytes_Resize (see out_grow).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_grammar.h"

enum { NO_MARKER = -1, CONTINUATION = -2 };

typedef const unsigned char *bytes_t;

/* The level marked at the start of a line (_levels.line_key_level without the warnings header), CONTINUATION for an
 * indented or empty line, else NO_MARKER. */
static inline Py_ALWAYS_INLINE int line_level(bytes_t s, Py_ssize_t n) { /* inlined: 1-3% of the JSON path */
    int level = grammar_marker(s, n);
    if (level >= 0) return level;
    if (n == 0 || GRAMMAR_IS_INDENT(s[0])) return CONTINUATION;
    return NO_MARKER;
}

/* --- the chunk renderer ------------------------------------------------------------------------------------------ */

static int is_traceback_start(bytes_t s, Py_ssize_t n) {
    for (int i = 0; i < GRAMMAR_N_TRACEBACK_STARTS; i++)
        if (n == GRAMMAR_TRACEBACK_STARTS[i].len && memcmp(s, GRAMMAR_TRACEBACK_STARTS[i].text, (size_t)n) == 0)
            return 1;
    return 0;
}

/* Length of the valid UTF-8 sequence starting with lead byte s[0] (>= 0x80), 0 when invalid (Python's strict rules:
 * no overlongs, no surrogates, nothing above U+10FFFF). */
static int utf8_len(bytes_t s, bytes_t end) {
    unsigned c = s[0];
#define CONT(i) (s + (i) < end && (s[i] & 0xC0) == 0x80)
    if (c >= 0xC2 && c <= 0xDF) return CONT(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (s + 1 >= end) return 0;
        unsigned c1 = s[1];
        if (c == 0xE0 && c1 < 0xA0) return 0;
        if (c == 0xED && c1 > 0x9F) return 0;
        return CONT(1) && CONT(2) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (s + 1 >= end) return 0;
        unsigned c1 = s[1];
        if (c == 0xF0 && c1 < 0x90) return 0;
        if (c == 0xF4 && c1 > 0x8F) return 0;
        return CONT(1) && CONT(2) && CONT(3) ? 4 : 0;
    }
    return 0;
#undef CONT
}

/* The output: one bytes object, grown by doubling and shrunk to size at the end, so records are written once, in
 * place (no second buffer, no copy into a bytes object). */
typedef struct {
    PyObject *bytes;
    char *data;
    size_t size, cap;
} outbuf;

/* Grow o to hold `extra` more bytes (out of line: the hot loop only pays for the test in out_reserve). */
Py_NO_INLINE static int out_grow(outbuf *o, size_t extra) {
    if (extra > (size_t)PY_SSIZE_T_MAX - o->size) {
        PyErr_NoMemory();
        return -1;
    }
    size_t need = o->size + extra;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < need) cap = cap > (size_t)PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    if (o->bytes == NULL) {
        o->bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
        if (o->bytes == NULL) return -1;
    } else if (_PyBytes_Resize(&o->bytes, (Py_ssize_t)cap) < 0) {
        /* _PyBytes_Resize is how the C API documents (on its bytes page) growing a bytes object still being built;
         * no public name does it on 3.11, and the alternative (a PyMem buffer copied into a new bytes object at the
         * end) costs a copy of every record. On failure it has freed the object and set o->bytes to NULL. */
        return -1;
    }
    o->data = PyBytes_AS_STRING(o->bytes);
    o->cap = cap;
    return 0;
}

/* Room for `extra` more bytes. -1 with MemoryError set (o->bytes then NULL or still the old object) on failure. */
static inline int out_reserve(outbuf *o, size_t extra) { return extra <= o->cap - o->size ? 0 : out_grow(o, extra); }

/* Offset of the first byte of [s, end) that may need escaping or checking (below 0x20, 0x7f, a backslash, a quote in
 * JSON, >= 0x80), or end - s when there is none. The newline that ends a line is below 0x20: render_lines finds each
 * line's end and its first special byte in this one scan. Three builds, all giving the same offset (the tests compare
 * them): 16 bytes at a time with SSE2 (x86-64's baseline), else 8 bytes at a time where a word's lowest byte is its
 * first (little-endian, with a count-trailing-zeros builtin), else one at a time. MLOPS_SPEEDUPS_WORD_SCAN builds the
 * word scan, MLOPS_SPEEDUPS_PORTABLE_SCAN the bytewise one, anywhere. */
#if !defined(MLOPS_SPEEDUPS_PORTABLE_SCAN) && PY_LITTLE_ENDIAN && (defined(__GNUC__) || defined(__clang__)) && \
    (!defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* For each byte of x, the high bit is set when the byte is one of those above. The lowest flagged byte is always a
 * real one (borrows only run upwards, towards later bytes in little-endian order), which is all the caller uses. */
static inline uint64_t special8(uint64_t x, int json) {
    uint64_t t = (x - ONES * 0x20) & ~x; /* bytes < 0x20 (for bytes < 0x80) */
    uint64_t y = x ^ (ONES * 0x5c), z = x ^ (ONES * 0x7f);
    t |= (y - ONES) & ~y;
    t |= (z - ONES) & ~z;
    if (json) {
        uint64_t q = x ^ (ONES * 0x22);
        t |= (q - ONES) & ~q;
    }
    return (t | x) & HIGHS;
}

/* The word scan of [p, end), fewer than 8 bytes left at the end padded with a plain letter. */
static inline Py_ssize_t first_special_words(bytes_t s, bytes_t p, bytes_t end, int json) {
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t m = special8(x, json);
        if (m) return (p - s) + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
    if (p < end) {
        uint64_t x = ONES * 'a'; /* pad the last bytes with a plain letter */
        memcpy(&x, p, (size_t)(end - p));
        uint64_t m = special8(x, json);
        if (m) return (p - s) + (__builtin_ctzll(m) >> 3);
    }
    return end - s;
}

#if defined(__SSE2__) && !defined(MLOPS_SPEEDUPS_WORD_SCAN)
#include <emmintrin.h>
#define SCAN "sse2"
static inline Py_ssize_t first_special(bytes_t s, bytes_t end, int json) {
    /* A signed compare with 0x20 flags the control bytes and (as negative numbers) every byte >= 0x80 at once. */
    const __m128i space = _mm_set1_epi8(0x20), backslash = _mm_set1_epi8('\\'), del = _mm_set1_epi8(0x7f);
    const __m128i quote = _mm_set1_epi8(json ? '"' : '\\');
    bytes_t p = s;
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(x, space), _mm_cmpeq_epi8(x, backslash)),
                                 _mm_or_si128(_mm_cmpeq_epi8(x, del), _mm_cmpeq_epi8(x, quote)));
        int bits = _mm_movemask_epi8(m);
        if (bits) return (p - s) + __builtin_ctz((unsigned)bits);
        p += 16;
    }
    return first_special_words(s, p, end, json); /* the last 0-15 bytes */
}
#else
#define SCAN "word"
static inline Py_ssize_t first_special(bytes_t s, bytes_t end, int json) { return first_special_words(s, s, end, json); }
#endif
#else
#define SCAN "byte"
static inline Py_ssize_t first_special(bytes_t s, bytes_t end, int json) {
    bytes_t p = s;
    while (p < end && *p >= 0x20 && *p < 0x7f && *p != '\\' && !(json && *p == '"')) p++;
    return p - s;
}
#endif

static const char HEX[] = "0123456789abcdef";

/* Append one line's bytes [s, end) to o, escaped for JSON (as orjson does) or for the text format (as
 * _render.escape_text does); `plain` is first_special(s, end, json). Returns 0, 1 when the line needs the exact path,
 * -1 on memory error. */
static int copy_escaped(outbuf *o, bytes_t s, bytes_t end, int json, Py_ssize_t plain) {
    for (;;) {
        if (out_reserve(o, (size_t)plain + 16) < 0) return -1;
        memcpy(o->data + o->size, s, (size_t)plain);
        o->size += (size_t)plain;
        s += plain;
        if (s >= end) return 0;
        unsigned c = *s;
        char *w = o->data + o->size; /* 16 bytes reserved: enough for one escape */
        if (c >= 0x80) {
            int len = utf8_len(s, end);
            if (len == 0) return 1; /* invalid UTF-8: raw_b64 on the exact path */
            /* Text: the line separators str.splitlines() knows beyond ASCII (U+2028, U+2029, NEL U+0085). */
            if (!json && len == 3 && c == 0xE2 && s[1] == 0x80 && (s[2] == 0xA8 || s[2] == 0xA9)) {
                memcpy(w, s[2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
                o->size += 6;
            } else if (!json && len == 2 && c == 0xC2 && s[1] == 0x85) {
                memcpy(w, "\\u0085", 6);
                o->size += 6;
            } else {
                memcpy(w, s, (size_t)len);
                o->size += (size_t)len;
            }
            s += len;
            plain = first_special(s, end, json);
            continue;
        }
        /* DEL, ESC, CR: the exact path (it cleans ESC sequences and CRs and keeps the line's bytes in raw_b64; in
         * JSON a CRLF may also end a line of a vLLM multi-line message, which it groups into one record). */
        if (c == 0x7f || c == 0x1b || c == '\r') return 1;
        w[0] = '\\';
        if (c == '\\' || c == '"') {
            w[1] = (char)c;
            o->size += 2;
        } else if (c == '\t') {
            w[1] = 't';
            o->size += 2;
        } else if (json && c == 0x08) {
            w[1] = 'b';
            o->size += 2;
        } else if (json && c == 0x0c) {
            w[1] = 'f';
            o->size += 2;
        } else if (json) {
            memcpy(w + 1, "u00", 3);
            w[4] = HEX[c >> 4];
            w[5] = HEX[c & 15];
            o->size += 6;
        } else {
            w[1] = 'x';
            w[2] = HEX[c >> 4];
            w[3] = HEX[c & 15];
            o->size += 4;
        }
        s++;
        plain = first_special(s, end, json);
    }
}

static int level_arg(int level) { return level >= 0 && level < NLEVELS; }

/* (rendered, count, last_level) as a new tuple; steals `rendered` (also on failure). */
static PyObject *result_tuple(PyObject *rendered, Py_ssize_t count, int level) {
    PyObject *tuple = PyTuple_New(3), *count_obj = PyLong_FromSsize_t(count), *level_obj = PyLong_FromLong(level);
    if (tuple == NULL || count_obj == NULL || level_obj == NULL) {
        Py_XDECREF(tuple);
        Py_XDECREF(count_obj);
        Py_XDECREF(level_obj);
        Py_DECREF(rendered);
        return NULL;
    }
    PyTuple_SET_ITEM(tuple, 0, rendered);
    PyTuple_SET_ITEM(tuple, 1, count_obj);
    PyTuple_SET_ITEM(tuple, 2, level_obj);
    return tuple;
}

/* What render_lines renders with, and what it has rendered so far. */
typedef struct {
    outbuf o;
    int json;
    bytes_t head_data[NLEVELS];
    Py_ssize_t head_len[NLEVELS];
    bytes_t tail;
    Py_ssize_t tail_len, max_line, count;
    int level; /* of the last line rendered (the previous chunk's at first) */
} renderer;

/* Render the complete lines of [s, end) (end[-1] is a newline) into r. 0, 1 when a line needs the exact path, -1 on
 * memory error (MemoryError set). */
static int render_range(renderer *r, bytes_t s, bytes_t end) {
    outbuf *o = &r->o;
    int json = r->json;
    while (s < end) {
        /* One scan finds the line's first special byte; most often that is its newline (nothing to escape). */
        Py_ssize_t plain = first_special(s, end, json);
        bytes_t nl = s[plain] == '\n' ? s + plain : memchr(s + plain, '\n', (size_t)(end - s - plain));
        Py_ssize_t n = nl - s;
        if (n > r->max_line) return 1;
        int level = r->level, marked = line_level(s, n);
        if (marked >= 0) {
            level = marked;
        } else {
            if (is_traceback_start(s, n)) return 1; /* "  + Exception Group Traceback ..." is indented */
            if (marked == NO_MARKER) {
                /* A Python warnings header ("x.py:3: UserWarning: ...") is WARNING: the exact path parses it. */
                if (memmem(s, (size_t)n, GRAMMAR_WARNING_NEEDLE, sizeof(GRAMMAR_WARNING_NEEDLE) - 1) != NULL) return 1;
                level = GRAMMAR_UNMARKED;
            } /* else an indented or empty line: it keeps the level of the line before */
        }
        /* Room for the head, the line's bytes up to its first special one and the tail (copy_escaped reserves
         * for the rest as it goes). */
        if (out_reserve(o, (size_t)r->head_len[level] + (size_t)plain + (size_t)r->tail_len) < 0) return -1;
        memcpy(o->data + o->size, r->head_data[level], (size_t)r->head_len[level]);
        o->size += (size_t)r->head_len[level];
        if (plain == n) {
            memcpy(o->data + o->size, s, (size_t)n);
            o->size += (size_t)n;
        } else {
            int rc = copy_escaped(o, s, s + n, json, plain); /* a CR anywhere, a CRLF ending included, is handed back */
            if (rc != 0) return rc;
            if (out_reserve(o, (size_t)r->tail_len) < 0) return -1;
        }
        memcpy(o->data + o->size, r->tail, (size_t)r->tail_len);
        o->size += (size_t)r->tail_len;
        r->level = level;
        r->count++;
        s = nl + 1;
    }
    return 0;
}

/* Render the line made of `pending` (no newline) and the first line of [s, end); *rest is where the next line of
 * [s, end) starts. Same returns as render_range. */
static int render_joined(renderer *r, const Py_buffer *pending, bytes_t s, bytes_t end, bytes_t *rest) {
    bytes_t nl = memchr(s, '\n', (size_t)(end - s));
    size_t size = (size_t)pending->len + (size_t)(nl + 1 - s);
    if (pending->len > r->max_line) return 1; /* (before the copy: the framer holds at most max_line_bytes) */
    unsigned char *line = PyMem_Malloc(size);
    if (line == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(line, pending->buf, (size_t)pending->len);
    memcpy(line + pending->len, s, (size_t)(nl + 1 - s));
    int rc = render_range(r, line, line + size);
    PyMem_Free(line);
    *rest = nl + 1;
    return rc;
}

PyDoc_STRVAR(render_lines_doc,
"render_lines($module, body, json, heads, tail, prev_level, max_line_bytes, pending=b'', /)\n--\n\n"
"Render complete lines (body ends with a newline): for each line heads[level] + escaped line + tail.\n\n"
"Levels are indexes into _level_map.LEVELS; prev_level is inherited by a first indented or empty line. pending: the\n"
"start of body's first line, held from an earlier read (rendered as if body were pending + body, without that\n"
"copy). Returns (rendered, count, last_level), or None when the chunk needs the exact line-by-line path.");

static PyObject *render_lines(PyObject *self, PyObject *args) {
    Py_buffer body, tail, pending = {0};
    int json, prev;
    PyObject *heads;
    Py_ssize_t max_line;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*pO!y*in|y*", &body, &json, &PyTuple_Type, &heads, &tail, &prev, &max_line,
                          &pending))
        return NULL;
    PyObject *result = NULL;
    renderer r = {.o = {NULL, NULL, 0, 0}, .json = json, .tail = tail.buf, .tail_len = tail.len, .max_line = max_line,
                  .count = 0, .level = prev};
    if (PyTuple_GET_SIZE(heads) != NLEVELS || !level_arg(prev)) {
        PyErr_Format(PyExc_ValueError, "heads must be a %d-tuple of bytes and prev_level an index into it", NLEVELS);
        goto done;
    }
    for (int i = 0; i < NLEVELS; i++) {
        PyObject *h = PyTuple_GET_ITEM(heads, i);
        if (!PyBytes_Check(h)) {
            PyErr_SetString(PyExc_TypeError, "heads must be bytes");
            goto done;
        }
        r.head_data[i] = (bytes_t)PyBytes_AS_STRING(h);
        r.head_len[i] = PyBytes_GET_SIZE(h);
    }
    bytes_t s = body.buf, end = s + body.len;
    if (body.len == 0 || end[-1] != '\n') {
        PyErr_SetString(PyExc_ValueError, "body must end with a newline");
        goto done;
    }
    /* Most records are longer than their line (JSON: about 1.8 times on bench/wrap.py's stream, text 1.3): room for
     * that at once, so the output is not grown (and copied) while it is written. */
    size_t in = (size_t)body.len + (size_t)(pending.obj != NULL ? pending.len : 0);
    if (out_reserve(&r.o, in + (json ? in : in / 2) + 4096) < 0) goto done; /* MemoryError set */
    int rc = 0;
    if (pending.obj != NULL && pending.len > 0) rc = render_joined(&r, &pending, s, end, &s);
    if (rc == 0) rc = render_range(&r, s, end);
    if (rc < 0) goto done; /* MemoryError set */
    if (rc > 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (_PyBytes_Resize(&r.o.bytes, (Py_ssize_t)r.o.size) == 0) { /* on failure: MemoryError set, o.bytes NULL */
        result = result_tuple(r.o.bytes, r.count, r.level);
        r.o.bytes = NULL; /* stolen */
    }
done:
    Py_XDECREF(r.o.bytes);
    PyBuffer_Release(&body);
    PyBuffer_Release(&tail);
    if (pending.obj != NULL) PyBuffer_Release(&pending);
    return result;
}

PyDoc_STRVAR(line_level_doc,
"line_level($module, line, /)\n--\n\n"
"Level index (_level_map.LEVELS) of the structural marker at the start of line (bytes, no newline).\n\n"
"CONTINUATION (-2) for an indented or empty line, NO_MARKER (-1) when it has none. Same grammar as\n"
"_levels.LINE_RE_B.");

static PyObject *py_line_level(PyObject *self, PyObject *arg) {
    Py_buffer line;
    (void)self;
    if (PyObject_GetBuffer(arg, &line, PyBUF_SIMPLE) < 0) return NULL;
    int level = line_level(line.buf, line.len);
    PyBuffer_Release(&line);
    return PyLong_FromLong(level);
}

static PyMethodDef methods[] = {
    {"render_lines", render_lines, METH_VARARGS, render_lines_doc},
    {"line_level", py_line_level, METH_O, line_level_doc},
    {NULL, NULL, 0, NULL},
};

/* Multi-phase initialisation (PEP 489): the module keeps no state of its own, so each interpreter gets its own. */
static int speedups_exec(PyObject *module) {
    if (PyModule_AddStringConstant(module, "GRAMMAR_DIGEST", GRAMMAR_DIGEST) < 0 ||
        PyModule_AddStringConstant(module, "SCAN", SCAN) < 0 ||
        PyModule_AddIntConstant(module, "NO_MARKER", NO_MARKER) < 0 ||
        PyModule_AddIntConstant(module, "CONTINUATION", CONTINUATION) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, speedups_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED}, /* no shared state: the functions read their arguments only */
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mlops_logging._speedups",
    .m_doc = "C speedups for logwrap's framer (optional).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModuleDef_Init(&module); }
