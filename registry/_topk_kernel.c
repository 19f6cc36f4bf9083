/* Exact top-k across channels of float32 and 16-bit float maps, with the channel each
 * value came from.
 *
 * The same method as registry/bitonic.py's keyed path, in one pass per tile of pixels
 * instead of some 130 tensor ops per chunk: each value becomes a 32-bit key (its
 * order-preserving bits with the lowest log2(C) given up, negated for largest, above
 * its channel), a bitonic network sorts a tile of pixels' keys side by side (each
 * compare-exchange a min and a max across the tile, which the compiler vectorises),
 * and each pixel is then made exact from its full bits: an insertion sort puts right
 * the values that shared a truncated key, and where an unselected value shares the
 * last selected one's truncated key, that group is ranked again from every channel.
 * Equal values keep their channel order (-0.0 equals +0.0), as a stable sort ranks
 * them. NaN is the caller's to exclude. A 16-bit float's key holds its whole value above
 * a 16-bit channel, so its order is exact from the start and no pixel needs the repair.
 *
 * Built at install time as an optional extension (setup.py); without it the tensor-op
 * path runs instead, with the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A tile holds `span` pixels' keys side by side, [channels][span]: about 64 KB, so the
 * network's passes stay in the L2 cache and each channel's row is a long contiguous run
 * (the loads stream from memory one long row per channel). */
#define TILE_KEYS 16384
#define MIN_SPAN 32
#define MAX_SPAN 2048

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif
#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* A float's bits as an int32 that orders like the float; -0.0 and +0.0 both give 0. */
static inline int32_t order_of(uint32_t bits) {
    int32_t magnitude = (int32_t)(bits & 0x7fffffffu);
    return (bits >> 31) ? -magnitude : magnitude;
}

/* The sort key: +-ceil(|bits| / 2^cut) (zeros alone in group 0), negated for largest,
 * above the channel. Ascending keys give the wanted order up to the lost bits. */
static inline int32_t key_of(uint32_t bits, int32_t channel, int cut, int largest) {
    uint32_t magnitude = bits & 0x7fffffffu;
    uint32_t step = (uint32_t)1 << cut;
    int32_t group = (int32_t)((magnitude + step - 1) & (0x7fffffffu & ~(step - 1)));
    if (bits >> 31) group = -group;
    return largest ? channel - group : group + channel;
}

/* The exact rank of a value: its order (negated for largest) above its channel. */
static inline int64_t exact_of(uint32_t bits, int32_t channel, int largest) {
    int64_t order = order_of(bits);
    return (largest ? -order : order) * ((int64_t)1 << 32) + channel;
}

/* Whether (order, channel) ranks before (other, other_channel). */
static inline int before(int32_t order, int32_t channel, int32_t other, int32_t other_channel) {
    return order < other || (order == other && channel < other_channel);
}

/* Whether an unselected value (the best of them: `best`, INT32_MAX if none) shares the
 * truncated key of the last selected one (`last`), outside the zeros' group 0, whose
 * members are all equal and already in channel order. */
static inline int shares_cut(int32_t best, int32_t last, int cut) {
    return best != INT32_MAX && (best >> cut) == (last >> cut) && (last >> cut) != 0;
}

static inline int64_t round8(int64_t count) { return (count + 7) & ~(int64_t)7; }

static inline void exchange(int32_t *restrict low, int32_t *restrict high, int64_t span) {
    for (int64_t t = 0; t < span; t++) {
        int32_t a = low[t], b = high[t];
        low[t] = a < b ? a : b;
        high[t] = a < b ? b : a;
    }
}

/* Sort each lane's keys (the columns of `keys`, [channels][span]) ascending far enough
 * that rows 0..k-1 hold its k smallest, in order; `best` gets each lane's smallest key
 * that did not make it (INT32_MAX when all did). */
VECTOR_CLONES
static void sort_tile(int32_t *keys, int32_t *best, int64_t channels, int64_t k, int64_t span) {
    for (int64_t block = 2; block < channels; block <<= 1)
        for (int64_t dist = block >> 1; dist >= 1; dist >>= 1)
            for (int64_t i = 0; i < channels; i++) {
                if (i & dist) continue;
                int32_t *a = keys + i * span, *b = keys + (i | dist) * span;
                if (i & block)
                    exchange(b, a, span);
                else
                    exchange(a, b, span);
            }
    for (int64_t t = 0; t < span; t++) best[t] = INT32_MAX;
    int64_t live = channels;
    /* the last merge of a bitonic sequence: while the top k fit in the lower half,
     * only that half is kept, and the upper half's best goes to `best` */
    for (int64_t dist = channels >> 1; dist >= 1; dist >>= 1) {
        if (k <= dist) {
            for (int64_t i = 0; i < dist; i++) {
                int32_t *a = keys + i * span, *b = keys + (i + dist) * span;
                for (int64_t t = 0; t < span; t++) {
                    int32_t x = a[t], y = b[t];
                    int32_t lost = x < y ? y : x;
                    a[t] = x < y ? x : y;
                    best[t] = lost < best[t] ? lost : best[t];
                }
            }
            live = dist;
        } else {
            for (int64_t i = 0; i < live; i++)
                if (!(i & dist)) exchange(keys + i * span, keys + (i | dist) * span, span);
        }
    }
    if (k < live) {
        const int32_t *next = keys + k * span;
        for (int64_t t = 0; t < span; t++) best[t] = next[t] < best[t] ? next[t] : best[t];
    }
}

static void insertion_sort(int64_t *ranks, int64_t count) {
    for (int64_t i = 1; i < count; i++) {
        int64_t r = ranks[i], j = i;
        for (; j > 0 && ranks[j - 1] > r; j--) ranks[j] = ranks[j - 1];
        ranks[j] = r;
    }
}

/* One pixel's exact top k from its sorted truncated keys (`stride`: between rows);
 * whether its cut's group had to be ranked again. */
static int finish_pixel(const uint32_t *bits, int64_t hw, const int32_t *keys, int64_t stride,
                         int32_t best, int64_t channels, int64_t k, int cut, int largest,
                         int64_t *ranks, int64_t *group, uint32_t *values, int64_t *index) {
    int32_t low = (int32_t)((1u << cut) - 1);
    for (int64_t r = 0; r < k; r++) {
        int32_t channel = keys[r * stride] & low;
        ranks[r] = exact_of(bits[channel * hw], channel, largest);
    }
    int32_t last = keys[(k - 1) * stride] >> cut;
    int regrouped = shares_cut(best, keys[(k - 1) * stride], cut);
    if (regrouped) { /* rank the cut's whole truncated group again, from every channel */
        int64_t first = k - 1;
        while (first > 0 && (keys[(first - 1) * stride] >> cut) == last) first--;
        int64_t members = 0;
        for (int32_t c = 0; c < channels; c++) {
            uint32_t b = bits[c * hw];
            if ((key_of(b, c, cut, largest) >> cut) == last)
                group[members++] = exact_of(b, c, largest);
        }
        insertion_sort(group, members);
        memcpy(ranks + first, group, (size_t)(k - first) * sizeof(int64_t));
    }
    insertion_sort(ranks, k); /* values that shared a truncated key, in exact order */
    for (int64_t r = 0; r < k; r++) {
        int32_t channel = (int32_t)(ranks[r] & 0xffffffff);
        values[r * hw] = bits[channel * hw];
        index[r * hw] = channel;
    }
    return regrouped;
}

typedef struct {
    int32_t *keys;                                     /* [channels][span] */
    int32_t *best, *previous, *previous_channel, *redo; /* [span] each */
    int64_t *offset, *out;                             /* [span] each */
    int64_t *ranks, *group;                            /* [k], [channels] */
} Scratch;

typedef struct {
    int64_t redone;    /* pixels the repair redid */
    int64_t regrouped; /* of those, pixels whose cut's group was ranked again */
} Counts;

/* A 16-bit float's key: its whole order (negated for largest) above a 16-bit channel,
 * so nothing is lost and the network's order is already exact. */
static inline int32_t half_key_of(uint32_t bits, int32_t channel, int largest) {
    int32_t magnitude = (int32_t)(bits & 0x7fffu);
    int32_t order = (bits >> 15) ? -magnitude : magnitude;
    return (largest ? -order : order) * 65536 + channel;
}

/* Element i of x: float32 bits, or a 16-bit float's (`half`). */
static inline uint32_t load(const void *x, int64_t i, int half) {
    return half ? ((const uint16_t *)x)[i] : ((const uint32_t *)x)[i];
}

static inline void store(void *v, int64_t i, uint32_t bits, int half) {
    if (half)
        ((uint16_t *)v)[i] = (uint16_t)bits;
    else
        ((uint32_t *)v)[i] = bits;
}

/* Pixels first..first+width-1 of x, `span` lanes (width rounded up; the spare lanes
 * copy the first). In one image (`same_image`) they are consecutive in memory, so the
 * compiler loads and stores whole vectors. 16-bit floats (`half`) have exact keys: no
 * pixel needs the repair. */
static ALWAYS_INLINE void run_tile(const void *x, void *values, int64_t *index, const Scratch *s,
                                   int64_t channels, int64_t hw, int64_t k, int largest, int cut,
                                   int64_t first, int64_t width, int64_t span, int same_image,
                                   int half, Counts *counts) {
    int32_t *keys = s->keys, *best = s->best, *previous = s->previous, *redo = s->redo;
    int32_t *previous_channel = s->previous_channel;
    int64_t *offset = s->offset, *out = s->out;
    int32_t low = half ? 0xffff : (int32_t)((1u << cut) - 1);
    for (int64_t t = 0; t < span; t++) {
        int64_t pixel = first + (t < width ? t : 0);
        offset[t] = (pixel / hw) * channels * hw + pixel % hw;
        out[t] = (pixel / hw) * k * hw + pixel % hw;
    }
    for (int32_t c = 0; c < channels; c++) {
        int32_t *row = keys + c * span;
        if (same_image) {
            int64_t in = offset[0] + c * hw;
            for (int64_t t = 0; t < width; t++) {
                uint32_t b = load(x, in + t, half);
                row[t] = half ? half_key_of(b, c, largest) : key_of(b, c, cut, largest);
            }
            for (int64_t t = width; t < span; t++) row[t] = row[0];
        } else {
            for (int64_t t = 0; t < span; t++) {
                uint32_t b = load(x, offset[t] + c * hw, half);
                row[t] = half ? half_key_of(b, c, largest) : key_of(b, c, cut, largest);
            }
        }
    }
    sort_tile(keys, best, channels, k, span);
    /* row by row across the tile: the values at the keys' channels, written out, and
     * the lanes whose truncation left them out of order or cut a shared group */
    const int32_t *cut_row = keys + (k - 1) * span;
    for (int64_t t = 0; t < width; t++) {
        redo[t] = !half && shares_cut(best[t], cut_row[t], cut);
        previous[t] = INT32_MIN;
        previous_channel[t] = -1;
    }
    for (int64_t r = 0; r < k; r++) {
        const int32_t *row = keys + r * span;
        for (int64_t t = 0; t < width; t++) {
            int32_t channel = row[t] & low;
            int64_t from = same_image ? offset[0] + channel * hw + t : offset[t] + channel * hw;
            int64_t to = (same_image ? out[0] + t : out[t]) + r * hw;
            uint32_t b = load(x, from, half);
            if (!half) {
                int32_t order = largest ? -order_of(b) : order_of(b);
                redo[t] |= before(order, channel, previous[t], previous_channel[t]);
                previous[t] = order;
                previous_channel[t] = channel;
            }
            store(values, to, b, half);
            index[to] = channel;
        }
    }
    for (int64_t t = 0; t < width; t++)
        if (redo[t]) {
            counts->redone++;
            counts->regrouped += finish_pixel((const uint32_t *)x + offset[t], hw, keys + t, span,
                                              best[t], channels, k, cut, largest, s->ranks,
                                              s->group, (uint32_t *)values + out[t],
                                              index + out[t]);
        }
}

/* One thread's scratch, carved from one block (returned, for free; NULL if none):
 * int64 offset, out ([lanes] each), ranks [k], group [channels]; then int32 keys
 * [channels][lanes], best, previous, previous_channel, redo ([lanes] each). */
static void *scratch(Scratch *s, int64_t lanes, int64_t channels, int64_t k) {
    size_t wide = (size_t)(2 * lanes + k + channels), narrow = (size_t)((channels + 4) * lanes);
    void *block = malloc(wide * sizeof(int64_t) + narrow * sizeof(int32_t));
    memset(s, 0, sizeof *s);
    if (!block) return NULL;
    s->offset = block, s->out = s->offset + lanes, s->ranks = s->out + lanes;
    s->group = s->ranks + k, s->keys = (int32_t *)(s->group + channels);
    s->best = s->keys + channels * lanes, s->previous = s->best + lanes;
    s->previous_channel = s->previous + lanes, s->redo = s->previous_channel + lanes;
    return block;
}

/* How the pixels are cut into tiles. */
typedef struct {
    int64_t count, each, per_image, lanes;
    int same_image;
} Tiling;

static Tiling tiling(int64_t n, int64_t channels, int64_t hw) {
    Tiling t;
    t.lanes = TILE_KEYS / channels;
    t.lanes = t.lanes < MIN_SPAN ? MIN_SPAN : t.lanes > MAX_SPAN ? MAX_SPAN : t.lanes;
    t.same_image = hw >= MIN_SPAN;
    if (t.same_image) { /* tiles within an image, its pixels split evenly */
        int64_t least = (hw + t.lanes - 1) / t.lanes; /* tiles an image needs */
        t.each = round8((hw + least - 1) / least);
        t.per_image = (hw + t.each - 1) / t.each;
        t.count = n * t.per_image;
    } else { /* small maps: a tile spans several images */
        t.each = t.lanes;
        t.per_image = 0;
        t.count = (n * hw + t.lanes - 1) / t.lanes;
    }
    return t;
}

/* The top k of every pixel of x (n, channels, hw), the tiles shared among `threads`
 * OpenMP threads: torch's own pool where torch's libgomp is loaded (its soname is the
 * system's, so this module binds to it), whose threads wait, spinning, for the next
 * parallel region; Python threads competed with that spinning for the cores. */
static int select_all(const void *x, void *values, int64_t *index, int64_t n, int64_t channels,
                      int64_t hw, int64_t k, int largest, int half, int threads, Counts *counts) {
    int cut = 0;
    while (((int64_t)1 << cut) < channels) cut++;
    Tiling tiles = tiling(n, channels, hw);
    int64_t lanes = tiles.lanes, redone = 0, regrouped = 0;
    int failed = 0;
    (void)threads;
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(+ : redone, regrouped)
    {
        Scratch s;
        Counts mine = {0, 0};
        void *block = scratch(&s, lanes, channels, k);
        if (!block) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t i = 0; i < tiles.count; i++) {
            if (!block) continue;
            int64_t first, width;
            if (tiles.same_image) {
                int64_t start = i % tiles.per_image * tiles.each;
                first = i / tiles.per_image * hw + start;
                width = hw - start < tiles.each ? hw - start : tiles.each;
            } else {
                first = i * lanes;
                width = n * hw - first < lanes ? n * hw - first : lanes;
            }
            /* each case its own inlined copy, so the loops know their layout and width */
#define RUN(same_image, half)                                                                  \
    run_tile(x, values, index, &s, channels, hw, k, largest, cut, first, width, round8(width), \
             same_image, half, &mine)
            if (tiles.same_image && half)
                RUN(1, 1);
            else if (tiles.same_image)
                RUN(1, 0);
            else if (half)
                RUN(0, 1);
            else
                RUN(0, 0);
#undef RUN
        }
        free(block);
        redone += mine.redone;
        regrouped += mine.regrouped;
    }
    counts->redone = redone;
    counts->regrouped = regrouped;
    return failed ? -1 : 0;
}

static PyObject *topk(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, values, index;
    Py_ssize_t n, channels, hw, k;
    int largest, half, threads;
    if (!PyArg_ParseTuple(args, "KKKnnnnppi", &x, &values, &index, &n, &channels, &hw, &k,
                          &largest, &half, &threads))
        return NULL;
    if (n < 0 || channels < 1 || channels > (half ? 1 << 16 : 1 << 20) ||
        (channels & (channels - 1)) || k < 1 || k > channels || hw < 1 || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "topk: bad sizes");
        return NULL;
    }
    int failed;
    Counts counts = {0, 0};
    Py_BEGIN_ALLOW_THREADS
    failed = select_all((const void *)(uintptr_t)x, (void *)(uintptr_t)values,
                        (int64_t *)(uintptr_t)index, n, channels, hw, k, largest, half, threads,
                        &counts);
    Py_END_ALLOW_THREADS
    if (failed) return PyErr_NoMemory();
    return Py_BuildValue("(LL)", (long long)counts.redone, (long long)counts.regrouped);
}

static PyMethodDef methods[] = {
    {"topk", topk, METH_VARARGS,
     "topk(x, values, index, n, channels, hw, k, largest, half, threads): the exact top k "
     "of every pixel of a contiguous (n, channels, hw) float32 (or 16-bit float: half) at "
     "address x, written to contiguous (n, k, hw) values of its dtype and int64 index at "
     "their addresses, on up to `threads` OpenMP threads. Returns (pixels the repair redid, "
     "pixels of those whose cut's group was ranked again)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_topk_kernel", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__topk_kernel(void) { return PyModule_Create(&module); }
