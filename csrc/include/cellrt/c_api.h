/*
 * cellrt C ABI: a stable, exception-free interface to the cellrt kernels for
 * acquisition software in any language that can call C.
 *
 * Conventions
 *  - Every function that computes something returns a cellrt_status_t (the
 *    version, error and device queries, cellrt_measure_columns(), the
 *    cellrt_*_options_init() functions and cellrt_drift_monitor_destroy()
 *    return their value or nothing). On
 *    failure a message is kept per thread; cellrt_last_error() returns it
 *    until the next call on that thread.
 *  - Structs that cross the boundary begin with `struct_size`; callers set it
 *    to sizeof(the struct) as they compiled it, so fields can be appended in
 *    later versions without breaking old binaries. Initialise options with
 *    the cellrt_*_options_init() functions.
 *  - The ABI only grows: functions and enum values are appended, never
 *    changed or removed. CUDA entry points exist in CPU-only builds and
 *    return CELLRT_STATUS_NOT_COMPILED.
 *  - Calls with device memory are stream-ordered on the given cudaStream_t
 *    (NULL: default stream). Those that report a count to the host -
 *    cellrt_tile, cellrt_stitch, cellrt_label, cellrt_measure,
 *    cellrt_label_measure, cellrt_contours and cellrt_mask_nms - return
 *    after the stream has finished. The others - cellrt_histogram, cellrt_gaussian_blur,
 *    cellrt_gaussian_blur_recursive, cellrt_box_mean, cellrt_fill_holes,
 *    cellrt_binary_morphology and cellrt_rbf_kernel - may return while
 *    their kernels still run: synchronise the stream (or order other
 *    streams after it with an event) before the host reads the output or
 *    another stream writes the input or output.
 *  - A library built for x86-64-v3 (CELLRT_X86_64_V3=ON, the default:
 *    AVX2, FMA, F16C) checks the CPU before it runs any of that code: on an
 *    older CPU every call that returns a status returns
 *    CELLRT_STATUS_NOT_COMPILED with a message naming the missing level and
 *    the rebuild option (-DCELLRT_X86_64_V3=OFF), instead of dying on an
 *    illegal instruction. cellrt_version(), cellrt_c_api_version() and
 *    cellrt_has_cuda() still answer; cellrt_cuda_device_count() returns 0.
 *
 * Threads
 *  - Every function may run on any number of threads at once, as long as no
 *    call writes memory that a concurrent call reads or writes: inputs may be
 *    shared, outputs may not. Between calls the library keeps only its
 *    worker pool, its CUDA scratch-memory pool and the CPU check's answer,
 *    all safe to share; the kernels themselves are reentrant.
 *  - The error message is per thread: a failure on one thread never changes
 *    what cellrt_last_error() returns on another.
 *  - A cellrt_drift_monitor_t holds a monitor's running state and no lock:
 *    one handle must not be used (update, reset, destroy) by two threads at
 *    once. Separate handles are independent.
 *  - A CPU call runs on num_threads threads (0 or negative: all hardware
 *    threads; more than 4 per hardware thread are not started). The
 *    process-wide worker pool serves one call at a time; a call that finds
 *    it busy starts threads of its own. Callers that run calls in parallel
 *    should therefore share the cores out through num_threads.
 *  - A call with CUDA memory runs on the calling thread's current device
 *    (cudaSetDevice); its memory and stream should belong to that device.
 *    Calls on different streams may overlap; calls on one stream run in
 *    its order.
 */
#ifndef CELLRT_C_API_H_
#define CELLRT_C_API_H_

#include <stddef.h>
#include <stdint.h>

#include "cellrt/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CELLRT_C_API_VERSION 9

typedef enum cellrt_status_t {
  CELLRT_STATUS_OK = 0,
  CELLRT_STATUS_INVALID_ARGUMENT = 1, /* bad shape, dtype, option or pointer */
  CELLRT_STATUS_OUT_OF_RANGE = 2,
  CELLRT_STATUS_NOT_COMPILED = 3,     /* e.g. CUDA memory passed to a CPU-only build, or a CPU
                                         without x86-64-v3 running a library built for it */
  CELLRT_STATUS_RUNTIME_ERROR = 4,    /* CUDA failure and other runtime errors */
  CELLRT_STATUS_UNKNOWN_ERROR = 5
} cellrt_status_t;

typedef enum cellrt_dtype_t {
  CELLRT_DTYPE_UINT8 = 0,
  CELLRT_DTYPE_UINT16 = 1,
  CELLRT_DTYPE_FLOAT16 = 2,
  CELLRT_DTYPE_FLOAT32 = 3,
  CELLRT_DTYPE_INT32 = 4,
  CELLRT_DTYPE_FLOAT64 = 5,
  CELLRT_DTYPE_INT64 = 6
} cellrt_dtype_t;

typedef enum cellrt_device_t { CELLRT_DEVICE_CPU = 0, CELLRT_DEVICE_CUDA = 1 } cellrt_device_t;

typedef enum cellrt_blend_t {
  CELLRT_BLEND_CONSTANT = 0,
  CELLRT_BLEND_LINEAR = 1,
  CELLRT_BLEND_COSINE = 2,
  CELLRT_BLEND_GAUSSIAN = 3,
  CELLRT_BLEND_CROP = 4
} cellrt_blend_t;

typedef enum cellrt_activation_t {
  CELLRT_ACTIVATION_NONE = 0,
  CELLRT_ACTIVATION_SIGMOID = 1,
  CELLRT_ACTIVATION_SOFTMAX = 2
} cellrt_activation_t;

/* A non-owning view of an array of up to 4 dimensions; strides in elements. */
typedef struct cellrt_tensor_t {
  size_t struct_size;
  void* data;
  int32_t dtype;  /* cellrt_dtype_t */
  int32_t device; /* cellrt_device_t */
  int32_t ndim;
  int64_t shape[4];
  int64_t strides[4];
} cellrt_tensor_t;

typedef struct cellrt_tile_options_t {
  size_t struct_size;
  const float* scale;  /* [C] or NULL (1) */
  const float* offset; /* [C] or NULL (0) */
  int32_t num_threads; /* 0: all hardware threads */
} cellrt_tile_options_t;

typedef struct cellrt_stitch_options_t {
  size_t struct_size;
  int32_t blend;      /* cellrt_blend_t */
  int32_t overlap_y;  /* taper width in pixels, [0, tile_h) */
  int32_t overlap_x;  /* taper width in pixels, [0, tile_w) */
  float sigma_scale;  /* gaussian sigma / tile side */
  int32_t activation; /* cellrt_activation_t; softmax takes at most 64 channels */
  int32_t argmax;     /* nonzero: out is [H, W] int32 class indices, -1 where no tile
                         covers a pixel; at most 64 channels */
  float fill_value;   /* written where no tile covers a pixel, in every channel and
                         without the activation; not used with argmax (-1 there) */
  int32_t num_threads;
} cellrt_stitch_options_t;

typedef struct cellrt_counts_t {
  size_t struct_size;
  int64_t uncovered; /* stitch: pixels covered by no tile */
  int64_t nonfinite; /* values that are NaN or infinite */
} cellrt_counts_t;

/* Message of the last failed call on this thread ("" if none). Owned by the
 * library, valid until the next cellrt call on this thread. */
CELLRT_EXPORT const char* cellrt_last_error(void);

/* "MAJOR.MINOR.PATCH" of the library. */
CELLRT_EXPORT const char* cellrt_version(void);

/* CELLRT_C_API_VERSION the library was built with. */
CELLRT_EXPORT int32_t cellrt_c_api_version(void);

/* 1 when built with CUDA kernels, else 0. */
CELLRT_EXPORT int32_t cellrt_has_cuda(void);

/* Number of usable CUDA devices now (0 without a driver or GPU). */
CELLRT_EXPORT int32_t cellrt_cuda_device_count(void);

/* Fill options with the defaults of the C++ API (gaussian blend, sigma
 * scale 0.125, no activation, fill 0, all threads). */
CELLRT_EXPORT void cellrt_tile_options_init(cellrt_tile_options_t* options);
CELLRT_EXPORT void cellrt_stitch_options_init(cellrt_stitch_options_t* options);

/* See cellrt/tile.h: image [C,H,W] u8/u16/f32 -> tiles [N,C,th,tw] f32/f16.
 * origins: host int64 [N*2] (y, x). counts may be NULL. */
CELLRT_EXPORT cellrt_status_t cellrt_tile(const cellrt_tensor_t* image, const int64_t* origins,
                                          const cellrt_tensor_t* tiles,
                                          const cellrt_tile_options_t* options, void* cuda_stream,
                                          cellrt_counts_t* counts);

/* See cellrt/stitch.h: tiles [N,C,th,tw] f32/f16 -> out [C,H,W] f32 (or
 * [H,W] int32 with argmax). Softmax and argmax keep a pixel's channels in
 * registers: C <= 64 (CELLRT_STATUS_INVALID_ARGUMENT beyond). counts may be
 * NULL. */
CELLRT_EXPORT cellrt_status_t cellrt_stitch(const cellrt_tensor_t* tiles, const int64_t* origins,
                                            const cellrt_tensor_t* out,
                                            const cellrt_stitch_options_t* options, void* cuda_stream,
                                            cellrt_counts_t* counts);

/* ---- label and measure (appended in C API version 1) ---------------------- */

typedef struct cellrt_label_options_t {
  size_t struct_size;
  int32_t connectivity; /* 4 or 8 */
  int32_t num_threads;  /* 0: all hardware threads */
} cellrt_label_options_t;

typedef struct cellrt_measure_options_t {
  size_t struct_size;
  int32_t num_threads;
} cellrt_measure_options_t;

/* Defaults: 8-connectivity, all threads. */
CELLRT_EXPORT void cellrt_label_options_init(cellrt_label_options_t* options);
CELLRT_EXPORT void cellrt_measure_options_init(cellrt_measure_options_t* options);

/* See cellrt/label.h: mask [H,W] uint8 -> labels [H,W] int32, components
 * numbered 1..N in raster order of their first pixel. num_objects (may be
 * NULL) receives N. */
CELLRT_EXPORT cellrt_status_t cellrt_label(const cellrt_tensor_t* mask, const cellrt_tensor_t* labels,
                                           const cellrt_label_options_t* options, void* cuda_stream,
                                           int64_t* num_objects);

/* Number of feature columns of cellrt_measure for K intensity channels:
 * 12 shape columns + 5 per channel (see cellrt/measure.h for the order);
 * -1 for a negative K or one whose count would not fit int32. */
CELLRT_EXPORT int32_t cellrt_measure_columns(int32_t intensity_channels);

/* See cellrt/measure.h: labels [H,W] int32 and optional intensities
 * [K,H,W] (NULL for none) -> features [N, cellrt_measure_columns(K)]
 * float64, all on one device. out_of_range (may be NULL) receives the
 * number of label pixels outside 0..N, which are not measured. */
CELLRT_EXPORT cellrt_status_t cellrt_measure(const cellrt_tensor_t* labels, int64_t num_objects,
                                             const cellrt_tensor_t* intensities,
                                             const cellrt_tensor_t* features,
                                             const cellrt_measure_options_t* options, void* cuda_stream,
                                             int64_t* out_of_range);

/* ---- the rest of the segmentation chain (appended in C API version 2) ----- */

typedef enum cellrt_border_t {
  CELLRT_BORDER_REFLECT = 0, /* d c b a | a b c d | d c b a */
  CELLRT_BORDER_NEAREST = 1  /* a a a a | a b c d | d d d d */
} cellrt_border_t;

typedef enum cellrt_footprint_t {
  CELLRT_FOOTPRINT_SQUARE = 0, /* (2r + 1) x (2r + 1) */
  CELLRT_FOOTPRINT_DISK = 1    /* dx^2 + dy^2 <= r^2 (scikit-image's disk) */
} cellrt_footprint_t;

typedef struct cellrt_filter_options_t {
  size_t struct_size;
  int32_t border;      /* cellrt_border_t */
  int32_t num_threads; /* 0: all hardware threads */
} cellrt_filter_options_t;

typedef struct cellrt_morphology_options_t {
  size_t struct_size;
  int32_t footprint;   /* cellrt_footprint_t */
  int32_t num_threads;
} cellrt_morphology_options_t;

typedef struct cellrt_mask_nms_options_t {
  size_t struct_size;
  float iou_threshold; /* suppress above this mask IoU */
  float ios_threshold; /* ... or above this intersection over the smaller mask (> 1: off) */
  int32_t class_aware; /* 0 / 1: only same-class instances suppress each other (needs classes) */
  int32_t num_threads;
} cellrt_mask_nms_options_t;

/* Defaults: reflect border / disk footprint, all threads; mask NMS: IoU
 * 0.5, intersection over the smaller off, class-aware. */
CELLRT_EXPORT void cellrt_mask_nms_options_init(cellrt_mask_nms_options_t* options);

/* See cellrt/nms.h (C API 3): greedy mask NMS. boxes [N,4] int32
 * [y0, x0, y1, x1), scores [N] float32, classes [N] int32 or NULL,
 * mask_offsets [N+1] int64 and mask_data uint8 (instance i's box-sized mask
 * at mask_data[mask_offsets[i]]), keep [N] uint8 written; *num_kept set.
 * All in host memory, or all in CUDA memory: then the masks' areas and
 * overlaps are computed on the GPU and the small tables (boxes, scores,
 * classes, offsets) read back, on the default stream, as this call takes
 * none; it returns once keep is written. The default stream does not wait
 * for a stream created with cudaStreamNonBlocking: inputs written on one
 * should be complete (synchronise it) before the call. A CPU-only build
 * returns CELLRT_STATUS_NOT_COMPILED for CUDA memory. */
CELLRT_EXPORT cellrt_status_t cellrt_mask_nms(const cellrt_tensor_t* boxes, const cellrt_tensor_t* scores,
                                              const cellrt_tensor_t* classes, const cellrt_tensor_t* mask_offsets,
                                              const cellrt_tensor_t* mask_data, const cellrt_tensor_t* keep,
                                              const cellrt_mask_nms_options_t* options, int64_t* num_kept);

/* Defaults: reflect border / disk footprint, all threads. */
CELLRT_EXPORT void cellrt_filter_options_init(cellrt_filter_options_t* options);
CELLRT_EXPORT void cellrt_morphology_options_init(cellrt_morphology_options_t* options);

/* See cellrt/mmd.h (C API 3): queries [M,D] and points [N,D] float32 ->
 * out float64, [M] kernel sums over the points or [M,N] kernel values, on
 * one device; the arithmetic of the streaming MMD drift monitor. */
CELLRT_EXPORT cellrt_status_t cellrt_rbf_kernel(const cellrt_tensor_t* queries, const cellrt_tensor_t* points,
                                                double sigma, const cellrt_tensor_t* out, int32_t num_threads,
                                                void* cuda_stream);

/* See cellrt/drift.h (C API 3): the streaming MMD drift monitor. The
 * reference (embeddings [N,D] float32 host, sigma, window, threshold) comes
 * from cellrt.drift.DriftReference.save_raw(); the monitor copies it. One
 * thread at a time per handle (it has no lock); create sets *monitor to NULL
 * on failure. */
typedef struct cellrt_drift_monitor cellrt_drift_monitor_t;

typedef struct cellrt_drift_step_t {
  size_t struct_size;
  int64_t index;        /* fields seen before this one */
  double statistic;     /* MMD^2 over the current window */
  double threshold;
  int32_t window_full;  /* 0 / 1 */
  int32_t alarm;        /* 0 / 1: window full and statistic > threshold */
} cellrt_drift_step_t;

CELLRT_EXPORT cellrt_status_t cellrt_drift_monitor_create(const cellrt_tensor_t* reference, double sigma,
                                                          int32_t window, double threshold,
                                                          cellrt_drift_monitor_t** monitor);
/* One field's embedding (dims float32 values), in acquisition order. */
CELLRT_EXPORT cellrt_status_t cellrt_drift_monitor_update(cellrt_drift_monitor_t* monitor, const float* embedding,
                                                          int64_t dims, cellrt_drift_step_t* step);
CELLRT_EXPORT cellrt_status_t cellrt_drift_monitor_reset(cellrt_drift_monitor_t* monitor);
CELLRT_EXPORT void cellrt_drift_monitor_destroy(cellrt_drift_monitor_t* monitor);

/* See cellrt/histogram.h: image uint8/uint16 (1-4 dims) -> counts [256 or
 * 65536] int64, on one device. */
CELLRT_EXPORT cellrt_status_t cellrt_histogram(const cellrt_tensor_t* image, const cellrt_tensor_t* counts,
                                               int32_t num_threads, void* cuda_stream);

/* See cellrt/filter.h: image, out [H,W] float32, distinct, on one device. */
CELLRT_EXPORT cellrt_status_t cellrt_gaussian_blur(const cellrt_tensor_t* image, const cellrt_tensor_t* out,
                                                   double sigma, double truncate,
                                                   const cellrt_filter_options_t* options, void* cuda_stream);
CELLRT_EXPORT cellrt_status_t cellrt_box_mean(const cellrt_tensor_t* image, const cellrt_tensor_t* out,
                                              int32_t size_y, int32_t size_x,
                                              const cellrt_filter_options_t* options, void* cuda_stream);

/* See cellrt/fill_holes.h: mask [H,W] uint8 -> out [H,W] uint8 (may be the
 * mask), connectivity of the foreground 4 or 8. */
CELLRT_EXPORT cellrt_status_t cellrt_fill_holes(const cellrt_tensor_t* mask, const cellrt_tensor_t* out,
                                                int32_t connectivity, void* cuda_stream);

/* See cellrt/morphology.h: mask [H,W] uint8 -> out [H,W] uint8 (0/1, not
 * the mask), eroded (dilate = 0) or dilated by the footprint of `radius`. */
CELLRT_EXPORT cellrt_status_t cellrt_binary_morphology(const cellrt_tensor_t* mask, const cellrt_tensor_t* out,
                                                       int32_t radius, int32_t dilate,
                                                       const cellrt_morphology_options_t* options,
                                                       void* cuda_stream);

/* See cellrt/contour.h: outer contours of objects 1..num_objects of labels
 * [H,W] int32. Call with points == NULL to fill offsets [N + 1] (CSR: the
 * points of object l are [offsets[l-1], offsets[l])) and learn *total, then
 * with points [total * 2] int32 (x, y) to fill them. perimeter [N] float64
 * may be NULL. Pointers are on the labels' device. */
CELLRT_EXPORT cellrt_status_t cellrt_contours(const cellrt_tensor_t* labels, int64_t num_objects, int64_t* offsets,
                                              int32_t* points, double* perimeter, int32_t num_threads,
                                              void* cuda_stream, int64_t* total);

/* C API 4. See cellrt/watershed.h (host memory only): touching objects split
 * by shape - distance_transform (mask [H,W] uint8 -> out [H,W] float32),
 * h_maxima_seeds (values [H,W] float32 -> seeds [H,W] int32, *count seeds),
 * watershed (surface [H,W] float32, labels [H,W] int32 seeds in / labels
 * out, mask [H,W] uint8; *labelled pixels; labelled may be NULL; the mask's
 * components are flooded on all hardware threads - cellrt_watershed_ex,
 * C API 9, takes a thread count). */
CELLRT_EXPORT cellrt_status_t cellrt_distance_transform(const cellrt_tensor_t* mask, const cellrt_tensor_t* out,
                                                        int32_t num_threads);
CELLRT_EXPORT cellrt_status_t cellrt_h_maxima_seeds(const cellrt_tensor_t* values, float h,
                                                    const cellrt_tensor_t* seeds, int32_t connectivity,
                                                    int64_t* count);
CELLRT_EXPORT cellrt_status_t cellrt_watershed(const cellrt_tensor_t* surface, const cellrt_tensor_t* labels,
                                               const cellrt_tensor_t* mask, int32_t connectivity,
                                               int64_t* labelled);

/* C API 5. See cellrt/filter.h: a gaussian blur whose cost per pixel does
 * not grow with sigma (recursive; within ~6.5e-4 of the largest input value
 * of cellrt_gaussian_blur per pass). image, out [H,W] float32, distinct, on
 * one device; sigma in [0, 1e5]; image finite (a NaN spreads over it all). */
CELLRT_EXPORT cellrt_status_t cellrt_gaussian_blur_recursive(const cellrt_tensor_t* image, const cellrt_tensor_t* out,
                                                             double sigma, const cellrt_filter_options_t* options,
                                                             void* cuda_stream);

/* C API 6. See cellrt/tile.h: the tile grid that cellrt_tile cuts and
 * cellrt_stitch blends back, as Python's cellrt.kernels.tile_origins lays it
 * out (overlaps in pixels here): origins (y, x) in raster order, stride
 * tile - overlap, the last tile of each row and column flush with the
 * border, one tile at 0 on an axis no longer than its tile. height, width,
 * tile_h, tile_w >= 1; 0 <= overlap < tile. Two calls: with origins NULL,
 * *count receives the number of tiles N; then with origins holding
 * capacity >= 2 N int64 values, they receive [N, 2]. *count (may be NULL)
 * is set also when capacity is too small (CELLRT_STATUS_OUT_OF_RANGE,
 * nothing written). */
CELLRT_EXPORT cellrt_status_t cellrt_tile_origins(int64_t height, int64_t width, int64_t tile_h, int64_t tile_w,
                                                  int64_t overlap_y, int64_t overlap_x, int64_t* origins,
                                                  int64_t capacity, int64_t* count);

/* C API 7. See cellrt/remove_small_objects.h (host memory only): the
 * objects of labels [H,W] int32 (>= 0) covering at least min_area pixels,
 * renumbered 1..N in increasing order of their old label, into out [H,W]
 * int32 (may be labels: in place); the rest become 0. min_area <= 0 copies
 * the labels and gives the largest one. *num_objects (may be NULL)
 * receives N. */
CELLRT_EXPORT cellrt_status_t cellrt_remove_small_objects(const cellrt_tensor_t* labels, const cellrt_tensor_t* out,
                                                          int64_t min_area, int32_t num_threads,
                                                          int64_t* num_objects);

/* C API 7. See cellrt/histogram.h (host memory only): out[i] = the qs[i]-th
 * percentile (0..100) of the finite values of a float32 array (any shape up
 * to 4-D, C-contiguous), as numpy.percentile(method="linear") gives it over
 * them - the percentile normalisation cellrt's models expect of float images.
 * count 0..8; out is NaN where no value is finite. *finite (may be NULL)
 * receives the number of finite values. */
CELLRT_EXPORT cellrt_status_t cellrt_percentiles(const cellrt_tensor_t* values, const double* qs, int32_t count,
                                                 double* out, int32_t num_threads, int64_t* finite);

/* C API 8. See cellrt/histogram.h (host memory only): counts [nbins] int64
 * of the finite values of a float32 array (any shape up to 4-D,
 * C-contiguous) in nbins (1 .. 2^24) equal bins between their min and max,
 * bin for bin as numpy.histogram counts them - the histogram of Otsu's and
 * the triangle threshold on float images. edges (nbins + 1 floats, may be
 * NULL) receives the bin edges; *finite (may be NULL) the number of finite
 * values (0: counts all 0, edges NaN). */
CELLRT_EXPORT cellrt_status_t cellrt_float_histogram(const cellrt_tensor_t* values, int32_t nbins, int64_t* counts,
                                                     float* edges, int32_t num_threads, int64_t* finite);

/* ---- label, filter and measure in one call (appended in C API version 9) -- */

typedef struct cellrt_label_measure_options_t {
  size_t struct_size;
  int32_t connectivity; /* 4 or 8 */
  int32_t num_threads;  /* 0: all hardware threads */
  int64_t min_area;     /* objects under this many pixels are dropped (0 or 1: none) */
} cellrt_label_measure_options_t;

/* Defaults: 8-connectivity, all threads, min_area 0. */
CELLRT_EXPORT void cellrt_label_measure_options_init(cellrt_label_measure_options_t* options);

/* C API 9. cellrt_watershed on num_threads threads (0: all hardware
 * threads), so that callers running calls in parallel can share the cores
 * out (see "Threads" above); the same labels whatever the count. */
CELLRT_EXPORT cellrt_status_t cellrt_watershed_ex(const cellrt_tensor_t* surface, const cellrt_tensor_t* labels,
                                                  const cellrt_tensor_t* mask, int32_t connectivity,
                                                  int32_t num_threads, int64_t* labelled);

/* C API 9. See cellrt/label_measure.h: cellrt_label, cellrt_remove_small_objects
 * and cellrt_measure in one call - on CUDA memory without the host waiting
 * for the object count between labelling and measuring. mask [H,W] uint8
 * -> labels [H,W] int32 (1..N in raster order of first pixel) and, with
 * optional intensities [K,H,W] (NULL for none), features [capacity,
 * cellrt_measure_columns(K)] float64: a guess of the row count, as N is not
 * known before the call (capacity may be 0; features.data must still not
 * be NULL, as for any tensor). *num_objects (may be NULL) receives N, *measured
 * (may be NULL) min(N, capacity), the rows written; when N > capacity the
 * labels are complete - measure them with cellrt_measure into an N-row
 * table. */
CELLRT_EXPORT cellrt_status_t cellrt_label_measure(const cellrt_tensor_t* mask, const cellrt_tensor_t* labels,
                                                   const cellrt_tensor_t* intensities,
                                                   const cellrt_tensor_t* features,
                                                   const cellrt_label_measure_options_t* options, void* cuda_stream,
                                                   int64_t* num_objects, int64_t* measured);

#ifdef __cplusplus
}
#endif

#endif /* CELLRT_C_API_H_ */
