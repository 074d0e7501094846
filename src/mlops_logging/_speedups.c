/* Optional C speedups for logwrap's framer (mlops_logging.lines): classify and render a chunk of complete lines in one
 * pass, with no Python object per line.
 *
 * This is the same job as StreamFramer._fast_lines in pure Python, and the same contract: the output is byte-identical
 * to the exact line-by-line path, and anything that path must see itself (ESC, DEL, any CR, invalid UTF-8, a line
 * longer than max_line_bytes, a traceback start, a warnings header) makes render_lines return None. The property tests
 * in tests/unit/test_lines.py and tests/unit/test_speedups.py compare this module with the Python paths.
 *
 * The level grammar (levels.py, _MARKER) is hand-compiled below as a backtracking matcher that tries the alternatives in
 * the order Python's re tries them, so the first successful path (and so the level token) is the same.
 *
 * Built by setuptools as an optional extension (like MarkupSafe's _speedups): without a C compiler the package installs
 * and runs on the pure-Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { LV_DEBUG = 0, LV_INFO = 1, LV_WARNING = 2, LV_ERROR = 3, LV_CRITICAL = 4, NLEVELS = 5 };
enum { NO_MARKER = -1, CONTINUATION = -2 };

typedef const unsigned char *bytes_t;

/* s[i] when i < n, else -1 (matches no character class). */
#define AT(i) ((i) < n ? (int)s[(i)] : -1)
#define DIGIT(c) ((c) >= '0' && (c) <= '9')

static int digits(bytes_t s, Py_ssize_t n, Py_ssize_t p, int count) {
    for (int k = 0; k < count; k++) {
        int c = AT(p + k);
        if (!DIGIT(c)) return 0;
    }
    return 1;
}

/* Length of the run of digits at p, counting at most `cap + 1` (enough to tell "more than cap"). */
static Py_ssize_t digit_run(bytes_t s, Py_ssize_t n, Py_ssize_t p, Py_ssize_t cap) {
    Py_ssize_t k = 0;
    while (k <= cap && DIGIT(AT(p + k))) k++;
    return k;
}

/* glog tail after "[IWEF][0-9]": (?=[0-9]{3} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6,9} ) */
static int glog_rest(bytes_t s, Py_ssize_t n, Py_ssize_t q) {
    if (!digits(s, n, q, 3) || AT(q + 3) != ' ' || !digits(s, n, q + 4, 2) || AT(q + 6) != ':' ||
        !digits(s, n, q + 7, 2) || AT(q + 9) != ':' || !digits(s, n, q + 10, 2) || AT(q + 12) != '.')
        return 0;
    Py_ssize_t run = digit_run(s, n, q + 13, 9);
    return run >= 6 && run <= 9 && AT(q + 13 + run) == ' ';
}

static int word_at(bytes_t s, Py_ssize_t n, Py_ssize_t p, const char *word, Py_ssize_t len) {
    if (p + len >= n || memcmp(s + p, word, (size_t)len) != 0) return 0;
    int c = s[p + len]; /* (?=[ :\]]) */
    return c == ' ' || c == ':' || c == ']';
}

/* The level token at p: (DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|TRACE)(?=[ :\]]) or a glog letter + digit. */
static int token_at(bytes_t s, Py_ssize_t n, Py_ssize_t p) {
    int glog = -1;
    switch (AT(p)) {
    case 'D':
        return word_at(s, n, p, "DEBUG", 5) ? LV_DEBUG : NO_MARKER;
    case 'T':
        return word_at(s, n, p, "TRACE", 5) ? LV_DEBUG : NO_MARKER;
    case 'C':
        return word_at(s, n, p, "CRITICAL", 8) ? LV_CRITICAL : NO_MARKER;
    case 'I':
        if (word_at(s, n, p, "INFO", 4)) return LV_INFO;
        glog = LV_INFO;
        break;
    case 'W':
        if (word_at(s, n, p, "WARNING", 7) || word_at(s, n, p, "WARN", 4)) return LV_WARNING;
        glog = LV_WARNING;
        break;
    case 'E':
        if (word_at(s, n, p, "ERROR", 5)) return LV_ERROR;
        glog = LV_ERROR;
        break;
    case 'F':
        if (word_at(s, n, p, "FATAL", 5)) return LV_CRITICAL;
        glog = LV_CRITICAL;
        break;
    default:
        return NO_MARKER;
    }
    return DIGIT(AT(p + 1)) && glog_rest(s, n, p + 2) ? glog : NO_MARKER;
}

/* Fraction options after the seconds at f: (?:[.,][0-9]{1,9})? greedy. Fills ends[] in the order re tries them. */
static int fraction_ends(bytes_t s, Py_ssize_t n, Py_ssize_t f, Py_ssize_t *ends) {
    int count = 0;
    int c = AT(f);
    if (c == '.' || c == ',') {
        Py_ssize_t run = digit_run(s, n, f + 1, 9);
        if (run > 9) run = 9;
        for (Py_ssize_t k = run; k >= 1; k--) ends[count++] = f + 1 + k;
    }
    ends[count++] = f;
    return count;
}

/* The token after a date-time prefix (MLflow, asctime, RFC 3339) ending at t, trying the separators in re's order:
 * (?: {1,2}| - [ -~]{1,64}? - ) */
static int after_datetime_sep(bytes_t s, Py_ssize_t n, Py_ssize_t t) {
    int level;
    if (AT(t) == ' ') {
        if (AT(t + 1) == ' ' && (level = token_at(s, n, t + 2)) != NO_MARKER) return level;
        if ((level = token_at(s, n, t + 1)) != NO_MARKER) return level;
    }
    if (AT(t) == ' ' && AT(t + 1) == '-' && AT(t + 2) == ' ') {
        for (Py_ssize_t k = 1; k <= 64; k++) {
            int c = AT(t + 2 + k);
            if (c < 0x20 || c > 0x7e) break; /* [ -~] */
            Py_ssize_t e = t + 3 + k;
            if (AT(e) == ' ' && AT(e + 1) == '-' && AT(e + 2) == ' ' && (level = token_at(s, n, e + 3)) != NO_MARKER)
                return level;
        }
    }
    return NO_MARKER;
}

/* [0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2} at p (with `slash`, "/" may stand for each "-" of the
 * date); the seconds end at p + 19. */
static int date_time_at(bytes_t s, Py_ssize_t n, Py_ssize_t p, int slash) {
    int c4 = AT(p + 4), c7 = AT(p + 7), c10 = AT(p + 10);
    return digits(s, n, p, 4) && (c4 == '-' || (slash && c4 == '/')) && digits(s, n, p + 5, 2) &&
           (c7 == '-' || (slash && c7 == '/')) && digits(s, n, p + 8, 2) && (c10 == ' ' || c10 == 'T') &&
           digits(s, n, p + 11, 2) && AT(p + 13) == ':' && digits(s, n, p + 14, 2) && AT(p + 16) == ':' &&
           digits(s, n, p + 17, 2);
}

/* [0-9]{4}[-/][0-9]{2}[-/][0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]{1,9})?(?:Z|[+-][0-9]{2}:?[0-9]{2})?SEP */
static int datetime_prefix(bytes_t s, Py_ssize_t n) {
    if (!date_time_at(s, n, 0, 1)) return NO_MARKER;
    Py_ssize_t fracs[10];
    int nf = fraction_ends(s, n, 19, fracs);
    for (int i = 0; i < nf; i++) {
        Py_ssize_t f = fracs[i], tz[4];
        int nt = 0;
        int c = AT(f);
        if (c == 'Z') tz[nt++] = f + 1;
        if ((c == '+' || c == '-') && digits(s, n, f + 1, 2)) {
            if (AT(f + 3) == ':' && digits(s, n, f + 4, 2)) tz[nt++] = f + 6;
            if (digits(s, n, f + 3, 2)) tz[nt++] = f + 5;
        }
        tz[nt++] = f;
        for (int j = 0; j < nt; j++) {
            int level = after_datetime_sep(s, n, tz[j]);
            if (level != NO_MARKER) return level;
        }
    }
    return NO_MARKER;
}

/* gunicorn: \[DATE[ T]TIME(?:[.,][0-9]{1,9})?(?: ?[+-][0-9]{4}|Z)?\] \[[0-9]+\] \[ then the token. */
static int gunicorn_prefix(bytes_t s, Py_ssize_t n) {
    if (AT(0) != '[' || !date_time_at(s, n, 1, 0)) return NO_MARKER;
    Py_ssize_t fracs[10];
    int nf = fraction_ends(s, n, 20, fracs);
    for (int i = 0; i < nf; i++) {
        Py_ssize_t f = fracs[i], tz[4];
        int nt = 0;
        int c = AT(f);
        if (c == ' ' && (AT(f + 1) == '+' || AT(f + 1) == '-') && digits(s, n, f + 2, 4)) tz[nt++] = f + 6;
        if ((c == '+' || c == '-') && digits(s, n, f + 1, 4)) tz[nt++] = f + 5;
        if (c == 'Z') tz[nt++] = f + 1;
        tz[nt++] = f;
        for (int j = 0; j < nt; j++) {
            Py_ssize_t t = tz[j];
            if (AT(t) != ']' || AT(t + 1) != ' ' || AT(t + 2) != '[') continue;
            Py_ssize_t run = 0;
            while (DIGIT(AT(t + 3 + run))) run++;
            Py_ssize_t e = t + 3 + run;
            if (run == 0 || AT(e) != ']' || AT(e + 1) != ' ' || AT(e + 2) != '[') continue;
            int level = token_at(s, n, e + 3);
            if (level != NO_MARKER) return level;
        }
    }
    return NO_MARKER;
}

/* The level marked at the start of a line (levels.LINE_RE: (?:PREFIX|\[)?(TOKEN)), CONTINUATION for an indented or
 * empty line, else NO_MARKER. */
static int line_level(bytes_t s, Py_ssize_t n) {
    int level;
    int c0 = AT(0);
    if (c0 == '(') { /* vLLM process tag: \([ -'*-~]{1,128}\) ; the class excludes both parentheses */
        Py_ssize_t run = 0;
        for (;;) {
            int c = AT(1 + run);
            if (c < 0x20 || c > 0x7e || c == '(' || c == ')' || run > 128) break;
            run++;
        }
        if (run >= 1 && run <= 128 && AT(1 + run) == ')' && AT(2 + run) == ' ' &&
            (level = token_at(s, n, 3 + run)) != NO_MARKER)
            return level;
    } else if (DIGIT(c0)) {
        if ((level = datetime_prefix(s, n)) != NO_MARKER) return level;
    } else if (c0 == '[') {
        if ((level = gunicorn_prefix(s, n)) != NO_MARKER) return level;
        if ((level = token_at(s, n, 1)) != NO_MARKER) return level;
    }
    if ((level = token_at(s, n, 0)) != NO_MARKER) return level;
    if (n == 0 || c0 == ' ' || c0 == '\t') return CONTINUATION;
    return NO_MARKER;
}

/* --- the chunk renderer ------------------------------------------------------------------------------------------ */

static const char TB1[] = "Traceback (most recent call last):";
static const char TB2[] = "  + Exception Group Traceback (most recent call last):";
static const char TB3[] = "Exception Group Traceback (most recent call last):";
static const char WARNING_NEEDLE[] = "Warning: ";

static int is_traceback_start(bytes_t s, Py_ssize_t n) {
    return (n == (Py_ssize_t)sizeof(TB1) - 1 && memcmp(s, TB1, sizeof(TB1) - 1) == 0) ||
           (n == (Py_ssize_t)sizeof(TB2) - 1 && memcmp(s, TB2, sizeof(TB2) - 1) == 0) ||
           (n == (Py_ssize_t)sizeof(TB3) - 1 && memcmp(s, TB3, sizeof(TB3) - 1) == 0);
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

static int out_reserve(outbuf *o, size_t extra) {
    if (o->size + extra <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->size + extra) cap *= 2;
    if (o->bytes == NULL) {
        o->bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
        if (o->bytes == NULL) return -1;
    } else if (_PyBytes_Resize(&o->bytes, (Py_ssize_t)cap) < 0) {
        return -1; /* o->bytes is NULL now */
    }
    o->data = PyBytes_AS_STRING(o->bytes);
    o->cap = cap;
    return 0;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* For each byte of x, the high bit is set when the byte may need escaping or checking: below 0x20, 0x7f, a backslash,
 * a quote (JSON only) or >= 0x80. The lowest flagged byte is always a real one (borrows only run upwards), which is
 * all the callers use: whether any is flagged, and where the first one is. */
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

/* Offset of the first byte of [s, end) that special8 flags, or end - s when there is none. */
static inline Py_ssize_t first_special(bytes_t s, bytes_t end, int json) {
    bytes_t p = s;
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

static const char HEX[] = "0123456789abcdef";

/* Append one line's bytes [s, end) to o, escaped for JSON (as orjson does) or for the text format (as
 * records._escape does). Returns 0, 1 when the line needs the exact path, -1 on memory error. */
static int copy_escaped(outbuf *o, bytes_t s, bytes_t end, int json) {
    for (;;) {
        Py_ssize_t plain = first_special(s, end, json);
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
    }
}

static int level_arg(int level) { return level >= 0 && level < NLEVELS; }

PyDoc_STRVAR(render_lines_doc,
"render_lines(body, json, heads, tail, prev_level, max_line_bytes) -> (bytes, count, last_level) | None\n\n"
"Render complete lines (body ends with a newline): for each line heads[level] + escaped line + tail. Levels are\n"
"indexes into records.LEVELS; prev_level is inherited by a first indented or empty line. None when the chunk needs\n"
"the exact line-by-line path.");

static PyObject *render_lines(PyObject *self, PyObject *args) {
    Py_buffer body;
    int json, prev;
    PyObject *heads;
    Py_buffer tail;
    Py_ssize_t max_line;
    if (!PyArg_ParseTuple(args, "y*pO!y*in", &body, &json, &PyTuple_Type, &heads, &tail, &prev, &max_line))
        return NULL;
    PyObject *result = NULL;
    outbuf o = {NULL, NULL, 0, 0};
    bytes_t head_data[NLEVELS];
    Py_ssize_t head_len[NLEVELS];
    if (PyTuple_GET_SIZE(heads) != NLEVELS || !level_arg(prev)) {
        PyErr_SetString(PyExc_ValueError, "heads must be a 5-tuple of bytes and prev_level an index into it");
        goto done;
    }
    for (int i = 0; i < NLEVELS; i++) {
        PyObject *h = PyTuple_GET_ITEM(heads, i);
        if (!PyBytes_Check(h)) {
            PyErr_SetString(PyExc_TypeError, "heads must be bytes");
            goto done;
        }
        head_data[i] = (bytes_t)PyBytes_AS_STRING(h);
        head_len[i] = PyBytes_GET_SIZE(h);
    }
    bytes_t s = body.buf, end = s + body.len;
    if (body.len == 0 || end[-1] != '\n') {
        PyErr_SetString(PyExc_ValueError, "body must end with a newline");
        goto done;
    }
    if (out_reserve(&o, (size_t)body.len * (json ? 2 : 3) / 2 + 4096) < 0) goto done; /* MemoryError set */
    Py_ssize_t count = 0;
    int level = prev;
    while (s < end) {
        bytes_t nl = memchr(s, '\n', (size_t)(end - s));
        Py_ssize_t n = nl - s;
        if (n > max_line) goto exact;
        Py_ssize_t content = n; /* a CR anywhere, a CRLF ending included, is handed back by copy_escaped */
        int marked = line_level(s, content);
        if (marked >= 0) {
            level = marked;
        } else {
            if (is_traceback_start(s, content)) goto exact; /* "  + Exception Group Traceback ..." is indented */
            if (marked == NO_MARKER) {
                /* A Python warnings header ("x.py:3: UserWarning: ...") is WARNING: the exact path parses it. */
                if (memmem(s, (size_t)content, WARNING_NEEDLE, sizeof(WARNING_NEEDLE) - 1) != NULL) goto exact;
                level = LV_INFO;
            } /* else an indented or empty line: it keeps the level of the line before */
        }
        if (out_reserve(&o, (size_t)head_len[level]) < 0) goto done; /* MemoryError set */
        memcpy(o.data + o.size, head_data[level], (size_t)head_len[level]);
        o.size += (size_t)head_len[level];
        int rc = copy_escaped(&o, s, s + content, json);
        if (rc < 0) goto done; /* MemoryError set */
        if (rc > 0) goto exact;
        if (out_reserve(&o, (size_t)tail.len) < 0) goto done; /* MemoryError set */
        memcpy(o.data + o.size, tail.buf, (size_t)tail.len);
        o.size += (size_t)tail.len;
        count++;
        s = nl + 1;
    }
    if (_PyBytes_Resize(&o.bytes, (Py_ssize_t)o.size) == 0) {
        result = Py_BuildValue("(Nni)", o.bytes, count, level);
        o.bytes = NULL; /* the tuple has it */
    }
    goto done;
exact:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(o.bytes);
    PyBuffer_Release(&body);
    PyBuffer_Release(&tail);
    return result;
}

PyDoc_STRVAR(line_level_doc,
"line_level(line) -> int\n\n"
"Level index (records.LEVELS) of the structural marker at the start of line (bytes, no newline), -2 for an\n"
"indented or empty line, -1 when it has no marker. Same grammar as levels.LINE_RE_B.");

static PyObject *py_line_level(PyObject *self, PyObject *arg) {
    Py_buffer line;
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

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mlops_logging._speedups",
    .m_doc = "C speedups for logwrap's framer (optional).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
