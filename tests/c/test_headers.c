/* The C ABI from plain C99: the headers compile as C, and tile + stitch run
 * through libcellrt_c with its error handling. Built and run by
 * tests/test_build.py; prints "ok" and exits 0 on success. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cellrt/c_api.h"

#define H 40
#define W 50
#define T 16
#define MAX_TILES 64

static int failures = 0;

#define EXPECT(cond, ...)                            \
  do {                                               \
    if (!(cond)) {                                   \
      fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                  \
      fprintf(stderr, "\n");                         \
      ++failures;                                    \
    }                                                \
  } while (0)

/* A 6 x 7 mask of a 2 x 2 square, a diagonal pair that only 8-connectivity
 * joins and a 2 x 3 block (4, 2 and 6 pixels), for label, measure and
 * label_measure. */
static uint8_t three_objects[6 * 7] = {
    1, 1, 0, 0, 0, 0, 0,
    1, 1, 0, 0, 1, 0, 0,
    0, 0, 0, 0, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0,
    0, 0, 1, 1, 1, 0, 0,
    0, 0, 1, 1, 1, 0, 0};

static void view(cellrt_tensor_t* t, void* data, cellrt_dtype_t dtype, int ndim, const int64_t* shape) {
  int i;
  memset(t, 0, sizeof *t);
  t->struct_size = sizeof *t;
  t->data = data;
  t->dtype = dtype;
  t->device = CELLRT_DEVICE_CPU;
  t->ndim = ndim;
  for (i = 0; i < ndim; ++i) t->shape[i] = shape[i];
  t->strides[ndim - 1] = 1;
  for (i = ndim - 2; i >= 0; --i) t->strides[i] = t->strides[i + 1] * shape[i + 1];
}

static int axis_origins(int extent, int tile, int overlap, int64_t* out) {
  int n = 0, pos = 0;
  for (;;) {
    out[n++] = pos + tile > extent ? extent - tile : pos;
    if (pos + tile >= extent) break;
    pos += tile - overlap;
  }
  return n;
}

int main(void) {
  static uint16_t image[H * W];
  static float tiles[MAX_TILES * T * T];
  static float field[H * W];
  int64_t ys[16], xs[16], origins[2 * MAX_TILES];
  int ny, nx, i, j, n = 0;
  cellrt_tensor_t image_view, tiles_view, field_view;
  cellrt_tile_options_t tile_options;
  cellrt_stitch_options_t stitch_options;
  cellrt_counts_t counts;
  cellrt_status_t status;
  double max_err = 0.0;

  printf("cellrt %s, C API %d, CUDA %d, devices %d\n", cellrt_version(), (int)cellrt_c_api_version(),
         (int)cellrt_has_cuda(), (int)cellrt_cuda_device_count());
  EXPECT(cellrt_c_api_version() == CELLRT_C_API_VERSION, "C API version mismatch");

  for (i = 0; i < H * W; ++i) image[i] = (uint16_t)((i * 7919u) % 4096u);
  ny = axis_origins(H, T, 4, ys);
  nx = axis_origins(W, T, 4, xs);
  for (i = 0; i < ny; ++i)
    for (j = 0; j < nx; ++j) {
      origins[2 * n] = ys[i];
      origins[2 * n + 1] = xs[j];
      ++n;
    }

  {
    const int64_t ishape[3] = {1, H, W};
    const int64_t tshape[4] = {n, 1, T, T};
    const int64_t fshape[3] = {1, H, W};
    view(&image_view, image, CELLRT_DTYPE_UINT16, 3, ishape);
    view(&tiles_view, tiles, CELLRT_DTYPE_FLOAT32, 4, tshape);
    view(&field_view, field, CELLRT_DTYPE_FLOAT32, 3, fshape);
  }
  cellrt_tile_options_init(&tile_options);
  cellrt_stitch_options_init(&stitch_options);
  stitch_options.blend = CELLRT_BLEND_COSINE;
  stitch_options.overlap_y = 4;
  stitch_options.overlap_x = 4;
  memset(&counts, 0, sizeof counts);
  counts.struct_size = sizeof counts;

  status = cellrt_tile(&image_view, origins, &tiles_view, &tile_options, NULL, &counts);
  EXPECT(status == CELLRT_STATUS_OK, "cellrt_tile: %s", cellrt_last_error());
  status = cellrt_stitch(&tiles_view, origins, &field_view, &stitch_options, NULL, &counts);
  EXPECT(status == CELLRT_STATUS_OK, "cellrt_stitch: %s", cellrt_last_error());
  EXPECT(counts.uncovered == 0 && counts.nonfinite == 0, "counts %lld %lld", (long long)counts.uncovered,
         (long long)counts.nonfinite);
  for (i = 0; i < H * W; ++i) {
    double e = fabs((double)field[i] - (double)image[i]);
    if (e > max_err) max_err = e;
  }
  EXPECT(max_err <= 4096 * 1e-6, "round trip error %g", max_err);

  /* An options struct from an older, shorter version keeps the defaults of
   * the fields it lacks (here: everything after blend -> gaussian not set). */
  {
    cellrt_stitch_options_t old;
    cellrt_stitch_options_init(&old);
    old.blend = CELLRT_BLEND_CONSTANT;
    old.struct_size = offsetof(cellrt_stitch_options_t, overlap_y);
    status = cellrt_stitch(&tiles_view, origins, &field_view, &old, NULL, NULL);
    EXPECT(status == CELLRT_STATUS_OK, "short options struct: %s", cellrt_last_error());
  }

  /* Errors come back as a status and a message, never as a crash. */
  origins[0] = H;
  status = cellrt_stitch(&tiles_view, origins, &field_view, &stitch_options, NULL, NULL);
  EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT, "bad origin gave status %d", (int)status);
  EXPECT(strstr(cellrt_last_error(), "origins[0]") != NULL, "message: %s", cellrt_last_error());
  origins[0] = 0;
  stitch_options.overlap_x = T;
  status = cellrt_stitch(&tiles_view, origins, &field_view, &stitch_options, NULL, NULL);
  EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "overlap_x") != NULL,
         "bad overlap: %d %s", (int)status, cellrt_last_error());
  status = cellrt_stitch(NULL, origins, &field_view, &stitch_options, NULL, NULL);
  EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT, "NULL tiles gave %d", (int)status);
  stitch_options.overlap_x = 4;

  /* Device memory in a build or machine that cannot use it. */
  if (cellrt_cuda_device_count() == 0) {
    tiles_view.device = CELLRT_DEVICE_CUDA;
    field_view.device = CELLRT_DEVICE_CUDA;
    status = cellrt_stitch(&tiles_view, origins, &field_view, &stitch_options, NULL, NULL);
    EXPECT(status == (cellrt_has_cuda() ? CELLRT_STATUS_RUNTIME_ERROR : CELLRT_STATUS_NOT_COMPILED),
           "CUDA without a device gave %d: %s", (int)status, cellrt_last_error());
  }
  status = cellrt_tile(&image_view, origins, &tiles_view, &tile_options, NULL, NULL);
  EXPECT(status != CELLRT_STATUS_OK, "mixed devices accepted");

  /* One 4 x 4 tile on a 6 x 6 field leaves 20 pixels uncovered: fill_value there, in every channel and not
   * activated; with argmax -1 there, whatever fill_value is. Softmax and argmax take at most 64 channels. */
  {
    static float one_tile[65 * 4 * 4], values[65 * 6 * 6];
    static int32_t classes[6 * 6];
    const int64_t one_origin[2] = {0, 0};
    const int64_t two_channels[4] = {1, 2, 4, 4}, many_channels[4] = {1, 65, 4, 4};
    const int64_t out_shape[3] = {2, 6, 6}, many_out_shape[3] = {65, 6, 6}, class_shape[2] = {6, 6};
    cellrt_tensor_t tile_view, out_view, class_view;
    cellrt_stitch_options_t fused;
    for (i = 0; i < 16; ++i) {
      one_tile[i] = 0.0f;      /* channel 0 */
      one_tile[16 + i] = 1.0f; /* channel 1: the larger */
    }
    view(&tile_view, one_tile, CELLRT_DTYPE_FLOAT32, 4, two_channels);
    view(&out_view, values, CELLRT_DTYPE_FLOAT32, 3, out_shape);
    view(&class_view, classes, CELLRT_DTYPE_INT32, 2, class_shape);
    cellrt_stitch_options_init(&fused);
    fused.blend = CELLRT_BLEND_CONSTANT;
    fused.activation = CELLRT_ACTIVATION_SIGMOID;
    fused.fill_value = 7.0f;
    status = cellrt_stitch(&tile_view, one_origin, &out_view, &fused, NULL, &counts);
    EXPECT(status == CELLRT_STATUS_OK && counts.uncovered == 20 && values[35] == 7.0f && values[36 + 35] == 7.0f &&
               fabs(values[0] - 0.5) < 1e-6,
           "sigmoid with uncovered pixels: %g %g %g, uncovered %lld: %s", values[35], values[36 + 35], values[0],
           (long long)counts.uncovered, cellrt_last_error());
    fused.activation = CELLRT_ACTIVATION_NONE;
    fused.argmax = 1;
    status = cellrt_stitch(&tile_view, one_origin, &class_view, &fused, NULL, NULL);
    EXPECT(status == CELLRT_STATUS_OK && classes[0] == 1 && classes[35] == -1,
           "argmax with uncovered pixels: %d %d: %s", classes[0], classes[35], cellrt_last_error());
    view(&tile_view, one_tile, CELLRT_DTYPE_FLOAT32, 4, many_channels);
    status = cellrt_stitch(&tile_view, one_origin, &class_view, &fused, NULL, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "at most 64 channels, got 65"),
           "argmax of 65 channels: %s", cellrt_last_error());
    fused.argmax = 0;
    fused.activation = CELLRT_ACTIVATION_SOFTMAX;
    view(&out_view, values, CELLRT_DTYPE_FLOAT32, 3, many_out_shape);
    status = cellrt_stitch(&tile_view, one_origin, &out_view, &fused, NULL, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "at most 64 channels, got 65"),
           "softmax of 65 channels: %s", cellrt_last_error());
  }

  /* label + measure on three_objects. */
  {
    uint8_t* mask = three_objects;
    static int32_t labels[6 * 7];
    static double features[3 * 12];
    const int64_t shape[2] = {6, 7};
    const int64_t fshape[2] = {3, 12};
    cellrt_tensor_t mask_view, labels_view, features_view;
    cellrt_label_options_t label_options;
    int64_t n = -1, bad = -1;
    view(&mask_view, mask, CELLRT_DTYPE_UINT8, 2, shape);
    view(&labels_view, labels, CELLRT_DTYPE_INT32, 2, shape);
    view(&features_view, features, CELLRT_DTYPE_FLOAT64, 2, fshape);
    cellrt_label_options_init(&label_options);
    status = cellrt_label(&mask_view, &labels_view, &label_options, NULL, &n);
    EXPECT(status == CELLRT_STATUS_OK && n == 3, "label 8: status %d, n %lld", (int)status, (long long)n);
    EXPECT(labels[0] == 1 && labels[11] == 2 && labels[19] == 2 && labels[30] == 3, "label numbering");
    label_options.connectivity = 4;
    status = cellrt_label(&mask_view, &labels_view, &label_options, NULL, &n);
    EXPECT(status == CELLRT_STATUS_OK && n == 4, "label 4: n %lld", (long long)n);
    label_options.connectivity = 8;
    cellrt_label(&mask_view, &labels_view, &label_options, NULL, &n);
    EXPECT(cellrt_measure_columns(0) == 12 && cellrt_measure_columns(2) == 22, "column count");
    EXPECT(cellrt_measure_columns(-1) == -1 && cellrt_measure_columns(INT32_MAX) == -1 &&
               cellrt_measure_columns((INT32_MAX - 12) / 5) == 12 + 5 * ((INT32_MAX - 12) / 5),
           "column count of impossible channel counts: %d %d", (int)cellrt_measure_columns(-1),
           (int)cellrt_measure_columns(INT32_MAX));
    status = cellrt_measure(&labels_view, 3, NULL, &features_view, NULL, NULL, &bad);
    EXPECT(status == CELLRT_STATUS_OK && bad == 0, "measure: %s", cellrt_last_error());
    EXPECT(features[0] == 4.0 && features[12] == 2.0 && features[24] == 6.0, "areas %g %g %g", features[0],
           features[12], features[24]);
    EXPECT(features[24 + 5] == 3.0 && features[24 + 6] == 4.5, "centroid %g %g", features[29], features[30]);
    EXPECT(features[11] == 4.0 && fabs(features[24 + 11] - 6.0) < 1e-12, "perimeters %g %g", features[11],
           features[35]);
    label_options.connectivity = 5;
    status = cellrt_label(&mask_view, &labels_view, &label_options, NULL, &n);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "connectivity") != NULL,
           "bad connectivity: %s", cellrt_last_error());
  }

  /* C API 2: histogram, fill_holes, morphology, filters, contours on a ring
   * around a hole (5 x 5 square with its centre missing). */
  {
    static uint8_t ring[7 * 7], filled[7 * 7], eroded[7 * 7];
    static int32_t ring_labels[7 * 7];
    static int64_t counts[256], offsets[2];
    static int32_t points[2 * 32];
    static float image[7 * 7], blurred[7 * 7];
    const int64_t shape[2] = {7, 7}, bins[1] = {256};
    cellrt_tensor_t ring_view, filled_view, eroded_view, labels_view, counts_view, image_view, blurred_view;
    cellrt_morphology_options_t morphology;
    cellrt_filter_options_t filter;
    int64_t n = 0, total = -1, i;
    int y, x;
    for (y = 1; y <= 5; ++y)
      for (x = 1; x <= 5; ++x) ring[y * 7 + x] = (uint8_t)!(y == 3 && x == 3);
    for (i = 0; i < 49; ++i) image[i] = 2.0f;
    view(&ring_view, ring, CELLRT_DTYPE_UINT8, 2, shape);
    view(&filled_view, filled, CELLRT_DTYPE_UINT8, 2, shape);
    view(&eroded_view, eroded, CELLRT_DTYPE_UINT8, 2, shape);
    view(&labels_view, ring_labels, CELLRT_DTYPE_INT32, 2, shape);
    view(&counts_view, counts, CELLRT_DTYPE_INT64, 1, bins);
    view(&image_view, image, CELLRT_DTYPE_FLOAT32, 2, shape);
    view(&blurred_view, blurred, CELLRT_DTYPE_FLOAT32, 2, shape);
    EXPECT(cellrt_c_api_version() >= 2, "C API 2 functions need version 2");
    status = cellrt_histogram(&ring_view, &counts_view, 0, NULL);
    EXPECT(status == CELLRT_STATUS_OK && counts[0] == 25 && counts[1] == 24, "histogram %lld %lld",
           (long long)counts[0], (long long)counts[1]);
    status = cellrt_fill_holes(&ring_view, &filled_view, 8, NULL);
    EXPECT(status == CELLRT_STATUS_OK && filled[3 * 7 + 3] == 1 && filled[0] == 0, "fill_holes: %s",
           cellrt_last_error());
    cellrt_morphology_options_init(&morphology);
    morphology.footprint = CELLRT_FOOTPRINT_SQUARE;
    status = cellrt_binary_morphology(&filled_view, &eroded_view, 1, 0, &morphology, NULL);
    EXPECT(status == CELLRT_STATUS_OK && eroded[3 * 7 + 3] == 1 && eroded[1 * 7 + 1] == 0 && eroded[2 * 7 + 2] == 1,
           "erosion: %s", cellrt_last_error());
    status = cellrt_binary_morphology(&filled_view, &filled_view, 1, 0, &morphology, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "out should not overlap mask"),
           "in-place morphology refused: %s", cellrt_last_error());
    cellrt_filter_options_init(&filter);
    status = cellrt_gaussian_blur(&image_view, &blurred_view, 1.5, 4.0, &filter, NULL);
    EXPECT(status == CELLRT_STATUS_OK && fabs(blurred[24] - 2.0f) < 1e-6, "blur of a constant: %g", blurred[24]);
    status = cellrt_box_mean(&image_view, &blurred_view, 3, 5, &filter, NULL);
    EXPECT(status == CELLRT_STATUS_OK && fabs(blurred[0] - 2.0f) < 1e-6, "box mean of a constant: %g", blurred[0]);
    status = cellrt_box_mean(&image_view, &blurred_view, 70000, 5, &filter, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "window sizes should be 1 .. 65535"),
           "box mean of a 70000-row window: %s", cellrt_last_error());
    {
      /* An output starting one row into its input (a partial overlap): refused, not a silently wrong image. */
      static float both[8 * 7];
      const int64_t six_rows[2] = {6, 7};
      cellrt_tensor_t top, shifted;
      view(&top, both, CELLRT_DTYPE_FLOAT32, 2, six_rows);
      view(&shifted, both + 7, CELLRT_DTYPE_FLOAT32, 2, six_rows);
      status = cellrt_gaussian_blur(&top, &shifted, 1.5, 4.0, &filter, NULL);
      EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "out should not overlap image"),
             "blur into its own image shifted a row: %s", cellrt_last_error());
    }
    cellrt_label(&ring_view, &labels_view, NULL, NULL, &n);
    status = cellrt_contours(&labels_view, n, offsets, NULL, NULL, 0, NULL, &total);
    EXPECT(status == CELLRT_STATUS_OK && n == 1 && total == 16 && offsets[1] == 16, "contour count %lld",
           (long long)total);
    status = cellrt_contours(&labels_view, n, offsets, points, NULL, 0, NULL, &total);
    EXPECT(status == CELLRT_STATUS_OK && points[0] == 1 && points[1] == 1, "first contour point (%d, %d)", points[0],
           points[1]);
  }

  /* C API 3: RBF kernel sums and values (the drift monitor's arithmetic). */
  {
    static float queries[2 * 2] = {0.0f, 0.0f, 3.0f, 4.0f}, points[2 * 2] = {0.0f, 0.0f, 3.0f, 4.0f};
    static double sums[2], values[2 * 2];
    const int64_t pair_shape[2] = {2, 2}, two[1] = {2};
    cellrt_tensor_t queries_view, points_view, sums_view, values_view;
    view(&queries_view, queries, CELLRT_DTYPE_FLOAT32, 2, pair_shape);
    view(&points_view, points, CELLRT_DTYPE_FLOAT32, 2, pair_shape);
    view(&sums_view, sums, CELLRT_DTYPE_FLOAT64, 1, two);
    view(&values_view, values, CELLRT_DTYPE_FLOAT64, 2, pair_shape);
    EXPECT(cellrt_c_api_version() >= 3, "C API 3 functions need version 3");
    status = cellrt_rbf_kernel(&queries_view, &points_view, 5.0, &values_view, 0, NULL);
    EXPECT(status == CELLRT_STATUS_OK && values[0] == 1.0 && fabs(values[1] - exp(-0.5)) < 1e-15,
           "rbf values %g %g: %s", values[0], values[1], cellrt_last_error());
    status = cellrt_rbf_kernel(&queries_view, &points_view, 5.0, &sums_view, 0, NULL);
    EXPECT(status == CELLRT_STATUS_OK && fabs(sums[1] - (1.0 + exp(-0.5))) < 1e-15, "rbf sums %g", sums[1]);
    status = cellrt_rbf_kernel(&queries_view, &points_view, 0.0, &sums_view, 0, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "sigma") != NULL,
           "bad sigma: %s", cellrt_last_error());
  }

  /* C API 3: mask NMS - two 2 x 2 squares sharing a column (IoU 1/3), a duplicate of the first, one far away. */
  {
    static int32_t boxes[4 * 4] = {0, 0, 2, 2, 0, 1, 2, 3, 0, 0, 2, 2, 5, 5, 7, 7};
    static float scores[4] = {0.9f, 0.8f, 0.7f, 0.6f};
    static int64_t offsets[5] = {0, 4, 8, 12, 16};
    static uint8_t masks[16], keep[4];
    const int64_t box_shape[2] = {4, 4}, four[1] = {4}, five[1] = {5}, sixteen[1] = {16};
    cellrt_tensor_t boxes_view, scores_view, offsets_view, masks_view, keep_view;
    cellrt_mask_nms_options_t nms;
    int64_t kept = -1, i;
    for (i = 0; i < 16; ++i) masks[i] = 1;
    view(&boxes_view, boxes, CELLRT_DTYPE_INT32, 2, box_shape);
    view(&scores_view, scores, CELLRT_DTYPE_FLOAT32, 1, four);
    view(&offsets_view, offsets, CELLRT_DTYPE_INT64, 1, five);
    view(&masks_view, masks, CELLRT_DTYPE_UINT8, 1, sixteen);
    view(&keep_view, keep, CELLRT_DTYPE_UINT8, 1, four);
    cellrt_mask_nms_options_init(&nms);
    nms.class_aware = 0;
    status = cellrt_mask_nms(&boxes_view, &scores_view, NULL, &offsets_view, &masks_view, &keep_view, &nms, &kept);
    EXPECT(status == CELLRT_STATUS_OK && kept == 3 && keep[0] && keep[1] && !keep[2] && keep[3],
           "mask_nms kept %lld: %d %d %d %d (%s)", (long long)kept, keep[0], keep[1], keep[2], keep[3],
           cellrt_last_error());
    nms.class_aware = 1;
    status = cellrt_mask_nms(&boxes_view, &scores_view, NULL, &offsets_view, &masks_view, &keep_view, &nms, &kept);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "class_aware needs classes"),
           "class-aware without classes: %s", cellrt_last_error());
  }

  /* C API 3: the drift monitor - a reference of four 2-D points, window 2; a far-away field alarms. */
  {
    static float reference[4 * 2] = {0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f};
    static const float near_field[2] = {0.5f, 0.5f}, far_field[2] = {40.0f, 40.0f};
    const int64_t ref_shape[2] = {4, 2};
    cellrt_tensor_t ref_view;
    cellrt_drift_monitor_t* monitor = NULL;
    cellrt_drift_step_t step;
    memset(&step, 0, sizeof step);
    step.struct_size = sizeof step;
    view(&ref_view, reference, CELLRT_DTYPE_FLOAT32, 2, ref_shape);
    status = cellrt_drift_monitor_create(&ref_view, 1.0, 2, 0.5, &monitor);
    EXPECT(status == CELLRT_STATUS_OK && monitor != NULL, "drift monitor create: %s", cellrt_last_error());
    status = cellrt_drift_monitor_update(monitor, near_field, 2, &step);
    EXPECT(status == CELLRT_STATUS_OK && step.index == 0 && !step.window_full && !step.alarm, "first field");
    status = cellrt_drift_monitor_update(monitor, near_field, 2, &step);
    EXPECT(status == CELLRT_STATUS_OK && step.window_full && !step.alarm && step.statistic < 0.5,
           "near fields: statistic %g", step.statistic);
    cellrt_drift_monitor_update(monitor, far_field, 2, &step);
    status = cellrt_drift_monitor_update(monitor, far_field, 2, &step);
    EXPECT(status == CELLRT_STATUS_OK && step.index == 3 && step.alarm && step.statistic > 0.5,
           "far fields: statistic %g alarm %d", step.statistic, (int)step.alarm);
    status = cellrt_drift_monitor_update(monitor, far_field, 3, &step);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "should have 2 values"),
           "wrong dims: %s", cellrt_last_error());
    EXPECT(cellrt_drift_monitor_reset(monitor) == CELLRT_STATUS_OK, "reset");
    cellrt_drift_monitor_update(monitor, near_field, 2, &step);
    EXPECT(step.index == 0, "index after reset %lld", (long long)step.index);
    cellrt_drift_monitor_destroy(monitor);
    status = cellrt_drift_monitor_create(&ref_view, -1.0, 2, 0.5, &monitor);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && monitor == NULL && strstr(cellrt_last_error(), "sigma"),
           "bad sigma: %s", cellrt_last_error());
  }

  /* C API 4: two 5 x 5 blocks joined by a one-pixel bridge are split in two by shape. */
  {
    static uint8_t blocks[7 * 13];
    static float distance[7 * 13], surface[7 * 13];
    static int32_t seeds[7 * 13];
    const int64_t block_shape[2] = {7, 13};
    cellrt_tensor_t blocks_view, distance_view, surface_view, seeds_view;
    int64_t count = -1, labelled = -1;
    int y, x, i;
    for (y = 1; y <= 5; ++y)
      for (x = 1; x <= 11; ++x) blocks[y * 13 + x] = (uint8_t)(x != 6 || y == 3);
    view(&blocks_view, blocks, CELLRT_DTYPE_UINT8, 2, block_shape);
    view(&distance_view, distance, CELLRT_DTYPE_FLOAT32, 2, block_shape);
    view(&surface_view, surface, CELLRT_DTYPE_FLOAT32, 2, block_shape);
    view(&seeds_view, seeds, CELLRT_DTYPE_INT32, 2, block_shape);
    EXPECT(cellrt_c_api_version() >= 4, "C API 4 functions need version 4");
    status = cellrt_distance_transform(&blocks_view, &distance_view, 0);
    EXPECT(status == CELLRT_STATUS_OK && distance[3 * 13 + 3] == 3.0f && distance[3 * 13 + 6] == 1.0f,
           "distance transform %g %g: %s", distance[3 * 13 + 3], distance[3 * 13 + 6], cellrt_last_error());
    status = cellrt_h_maxima_seeds(&distance_view, 1.0f, &seeds_view, 8, &count);
    EXPECT(status == CELLRT_STATUS_OK && count == 2 && seeds[3 * 13 + 3] == 1 && seeds[3 * 13 + 9] == 2,
           "h-maxima seeds: %lld: %s", (long long)count, cellrt_last_error());
    for (i = 0; i < 7 * 13; ++i) surface[i] = -distance[i];
    status = cellrt_watershed(&surface_view, &seeds_view, &blocks_view, 8, &labelled);
    EXPECT(status == CELLRT_STATUS_OK && labelled == 49 && seeds[1 * 13 + 1] == 1 && seeds[5 * 13 + 11] == 2,
           "watershed: %lld labelled: %s", (long long)labelled, cellrt_last_error());
    status = cellrt_watershed(&surface_view, &seeds_view, &blocks_view, 6, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "connectivity should be 4 or 8"),
           "bad connectivity: %s", cellrt_last_error());
    /* C API 9: the same flood on one thread gives the same labels. */
    {
      static int32_t again[7 * 13];
      cellrt_tensor_t again_view;
      int64_t labelled_again = -1;
      view(&again_view, again, CELLRT_DTYPE_INT32, 2, block_shape);
      cellrt_h_maxima_seeds(&distance_view, 1.0f, &again_view, 8, NULL);
      status = cellrt_watershed_ex(&surface_view, &again_view, &blocks_view, 8, 1, &labelled_again);
      EXPECT(status == CELLRT_STATUS_OK && labelled_again == 49 && memcmp(again, seeds, sizeof again) == 0,
             "watershed_ex on 1 thread: %lld labelled: %s", (long long)labelled_again, cellrt_last_error());
    }
  }

  /* C API 5: the recursive gaussian keeps a flat image flat and spreads a spike over a gaussian's width. */
  {
    static float flat[9 * 11], spike[9 * 11], blurred[9 * 11];
    const int64_t filter_shape[2] = {9, 11};
    cellrt_tensor_t flat_view, spike_view, blurred_view;
    cellrt_filter_options_t filter;
    int i;
    for (i = 0; i < 9 * 11; ++i) flat[i] = 7.0f;
    spike[4 * 11 + 5] = 1.0f;
    view(&flat_view, flat, CELLRT_DTYPE_FLOAT32, 2, filter_shape);
    view(&spike_view, spike, CELLRT_DTYPE_FLOAT32, 2, filter_shape);
    view(&blurred_view, blurred, CELLRT_DTYPE_FLOAT32, 2, filter_shape);
    cellrt_filter_options_init(&filter);
    EXPECT(cellrt_c_api_version() >= 5, "C API 5 functions need version 5");
    status = cellrt_gaussian_blur_recursive(&flat_view, &blurred_view, 3.0, &filter, NULL);
    EXPECT(status == CELLRT_STATUS_OK && fabsf(blurred[0] - 7.0f) < 1e-5f && fabsf(blurred[50] - 7.0f) < 1e-5f,
           "recursive blur of a flat image: %g %g: %s", blurred[0], blurred[50], cellrt_last_error());
    status = cellrt_gaussian_blur_recursive(&spike_view, &blurred_view, 1.0, &filter, NULL);
    /* 1-D taps of sigma 1 at offsets 0 and 1: 0.3989 and 0.2420 (products for the 2-D values). */
    EXPECT(status == CELLRT_STATUS_OK && fabsf(blurred[4 * 11 + 5] - 0.1592f) < 5e-4f &&
               fabsf(blurred[4 * 11 + 6] - 0.0965f) < 5e-4f,
           "recursive blur of a spike: %g %g: %s", blurred[4 * 11 + 5], blurred[4 * 11 + 6], cellrt_last_error());
    status = cellrt_gaussian_blur_recursive(&flat_view, &blurred_view, -1.0, &filter, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "sigma should be in [0, 1e5]"),
           "negative sigma: %s", cellrt_last_error());
  }

  /* C API 6: the tile grid, two calls - the grid tile and stitch ran on above, built here by hand. */
  {
    int64_t grid[2 * MAX_TILES], count = -1, k;
    EXPECT(cellrt_c_api_version() >= 6, "C API 6 functions need version 6");
    status = cellrt_tile_origins(H, W, T, T, 4, 4, NULL, 0, &count);
    EXPECT(status == CELLRT_STATUS_OK && count == n, "tile_origins count %lld, grid by hand %d: %s",
           (long long)count, n, cellrt_last_error());
    count = -1;
    status = cellrt_tile_origins(H, W, T, T, 4, 4, grid, 2 * n - 1, &count);
    EXPECT(status == CELLRT_STATUS_OUT_OF_RANGE && count == n && strstr(cellrt_last_error(), "should hold 2 x"),
           "tile_origins into a buffer one value short: %d, count %lld: %s", (int)status, (long long)count,
           cellrt_last_error());
    status = cellrt_tile_origins(H, W, T, T, 4, 4, grid, 2 * MAX_TILES, &count);
    EXPECT(status == CELLRT_STATUS_OK && count == n, "tile_origins: %s", cellrt_last_error());
    for (k = 0; k < 2 * n; ++k)
      if (grid[k] != origins[k]) {
        EXPECT(0, "tile_origins value %lld: %lld, by hand %lld", (long long)k, (long long)grid[k],
               (long long)origins[k]);
        break;
      }
    /* Rectangular tiles, no overlap across; an image narrower than its tile gets one column at 0. */
    status = cellrt_tile_origins(40, 10, 16, 32, 8, 0, grid, 2 * MAX_TILES, &count);
    EXPECT(status == CELLRT_STATUS_OK && count == 4 && grid[0] == 0 && grid[2] == 8 && grid[6] == 24 &&
               grid[1] == 0 && grid[7] == 0,
           "narrow image: count %lld, rows %lld %lld %lld", (long long)count, (long long)grid[0],
           (long long)grid[2], (long long)grid[6]);
    status = cellrt_tile_origins(H, W, T, T, 4, T, NULL, 0, &count);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT &&
               strstr(cellrt_last_error(), "overlap_x should be in [0, tile_w) = [0, 16), got 16"),
           "overlap as large as the tile: %s", cellrt_last_error());
  }

  /* C API 7: small objects dropped and the rest renumbered in label order, in place. */
  {
    /* Label 5: 3 pixels, label 2: 1 pixel, label 9: 4 pixels; label 1 absent. */
    static int32_t objects[3 * 4] = {5, 5, 0, 9, 5, 2, 0, 9, 0, 0, 9, 9};
    const int64_t objects_shape[2] = {3, 4};
    cellrt_tensor_t objects_view;
    int64_t kept = -1;
    view(&objects_view, objects, CELLRT_DTYPE_INT32, 2, objects_shape);
    EXPECT(cellrt_c_api_version() >= 7, "C API 7 functions need version 7");
    status = cellrt_remove_small_objects(&objects_view, &objects_view, 2, 0, &kept);
    EXPECT(status == CELLRT_STATUS_OK && kept == 2 && objects[0] == 1 && objects[5] == 0 && objects[3] == 2 &&
               objects[11] == 2,
           "remove_small_objects: %lld kept, %d %d %d: %s", (long long)kept, objects[0], objects[5], objects[3],
           cellrt_last_error());
    objects[6] = -3;
    status = cellrt_remove_small_objects(&objects_view, &objects_view, 2, 0, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "got 1 negative pixel(s)"),
           "negative label: %s", cellrt_last_error());
    {
      /* In place is allowed; out one element into labels is not (it would renumber pixels not yet read). */
      const int64_t two_rows[2] = {2, 4};
      cellrt_tensor_t first_rows, one_on;
      objects[6] = 0;
      view(&first_rows, objects, CELLRT_DTYPE_INT32, 2, two_rows);
      view(&one_on, objects + 1, CELLRT_DTYPE_INT32, 2, two_rows);
      status = cellrt_remove_small_objects(&first_rows, &one_on, 2, 0, NULL);
      EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT &&
                 strstr(cellrt_last_error(), "out should not overlap labels other than being it (in place)"),
             "remove_small_objects into labels + 1: %s", cellrt_last_error());
    }
  }

  /* C API 7: percentiles of the finite values, numpy's "linear" method. */
  {
    static float samples[2 * 5] = {4.0f, -1.0f, 2.0f, 0.0f, 3.0f, 1.0f, 0.0f, 0.0f, 10.0f, 0.0f};
    const int64_t samples_shape[2] = {2, 5};
    const double qs[3] = {0.0, 50.0, 90.0};
    double p[3] = {0, 0, 0};
    cellrt_tensor_t samples_view;
    int64_t finite = -1;
    samples[6] = NAN;
    samples[7] = INFINITY;
    view(&samples_view, samples, CELLRT_DTYPE_FLOAT32, 2, samples_shape);
    /* Finite values, sorted: -1 0 0 1 2 3 4 10; the 0th percentile is -1, the 50th (position 3.5) 1.5,
     * the 90th (position 6.3) 4 + 0.3 x 6 = 5.8. */
    status = cellrt_percentiles(&samples_view, qs, 3, p, 0, &finite);
    EXPECT(status == CELLRT_STATUS_OK && finite == 8 && p[0] == -1.0 && p[1] == 1.5 && fabs(p[2] - 5.8) < 1e-12,
           "percentiles: %lld finite, %g %g %g: %s", (long long)finite, p[0], p[1], p[2], cellrt_last_error());
  }

  /* C API 8: equal bins of the finite values between their min and max, as numpy.histogram counts them. */
  {
    static float samples[2 * 5] = {4.0f, -1.0f, 2.0f, 0.0f, 3.0f, 1.0f, 0.0f, 0.0f, 10.0f, 0.0f};
    const int64_t samples_shape[2] = {2, 5};
    int64_t counts[4] = {-1, -1, -1, -1}, finite = -1;
    float edges[5] = {0, 0, 0, 0, 0};
    cellrt_tensor_t samples_view;
    samples[6] = NAN;
    samples[7] = -INFINITY;
    view(&samples_view, samples, CELLRT_DTYPE_FLOAT32, 2, samples_shape);
    EXPECT(cellrt_c_api_version() >= 8, "C API 8 functions need version 8");
    /* Finite values -1 0 0 1 2 3 4 10 in 4 bins of 2.75: edges -1 1.75 4.5 7.25 10. */
    status = cellrt_float_histogram(&samples_view, 4, counts, edges, 0, &finite);
    EXPECT(status == CELLRT_STATUS_OK && finite == 8 && counts[0] == 4 && counts[1] == 3 && counts[2] == 0 &&
               counts[3] == 1 && edges[0] == -1.0f && edges[1] == 1.75f && edges[4] == 10.0f,
           "float_histogram: %lld finite, counts %lld %lld %lld %lld: %s", (long long)finite, (long long)counts[0],
           (long long)counts[1], (long long)counts[2], (long long)counts[3], cellrt_last_error());
    status = cellrt_float_histogram(&samples_view, 0, counts, NULL, 0, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "nbins"),
           "float_histogram nbins 0: %s", cellrt_last_error());
  }

  /* C API 9: label, drop objects under 3 pixels and measure in one call, on three_objects: the 2-pixel
   * diagonal pair goes, the others become 1 and 2. */
  {
    uint8_t* mask = three_objects;
    static int32_t labels[6 * 7];
    static uint16_t intensity[6 * 7];
    static double features[2 * 17];
    const int64_t shape[2] = {6, 7}, ishape[3] = {1, 6, 7}, one_row[2] = {1, 17}, two_rows[2] = {2, 17};
    int64_t n = -1, measured = -1;
    int i;
    cellrt_tensor_t mask_view, labels_view, intensity_view, features_view;
    cellrt_label_measure_options_t options;
    for (i = 0; i < 6 * 7; ++i) intensity[i] = (uint16_t)(10 * i);
    for (i = 0; i < 2 * 17; ++i) features[i] = -7.0;
    view(&mask_view, mask, CELLRT_DTYPE_UINT8, 2, shape);
    view(&labels_view, labels, CELLRT_DTYPE_INT32, 2, shape);
    view(&intensity_view, intensity, CELLRT_DTYPE_UINT16, 3, ishape);
    view(&features_view, features, CELLRT_DTYPE_FLOAT64, 2, one_row);
    EXPECT(cellrt_c_api_version() >= 9, "C API 9 functions need version 9");
    cellrt_label_measure_options_init(&options);
    EXPECT(options.connectivity == 8 && options.min_area == 0, "label_measure defaults");
    options.min_area = 3;
    /* one row for two objects: the first measured, the labels complete */
    status = cellrt_label_measure(&mask_view, &labels_view, &intensity_view, &features_view, &options, NULL, &n,
                                  &measured);
    EXPECT(status == CELLRT_STATUS_OK && n == 2 && measured == 1, "label_measure: n %lld measured %lld: %s",
           (long long)n, (long long)measured, cellrt_last_error());
    EXPECT(labels[0] == 1 && labels[11] == 0 && labels[12] == 0 && labels[30] == 2 && labels[41] == 0,
           "label_measure numbering");
    /* object 1: pixels 0, 1, 7, 8: area 4, integrated intensity 10 x 16 */
    EXPECT(features[0] == 4.0 && features[12] == 160.0 && features[17] == -7.0, "label_measure row: %g %g %g",
           features[0], features[12], features[17]);
    features_view.shape[0] = 2;
    status = cellrt_measure(&labels_view, n, &intensity_view, &features_view, NULL, NULL, NULL);
    EXPECT(status == CELLRT_STATUS_OK && features[17] == 6.0, "measure after label_measure: %g", features[17]);
    view(&features_view, features, CELLRT_DTYPE_FLOAT64, 2, two_rows);
    status = cellrt_label_measure(&mask_view, &labels_view, NULL, &features_view, &options, NULL, &n, &measured);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT &&
               strstr(cellrt_last_error(), "label_measure: features should be (capacity, 12) for 0 intensity"),
           "label_measure columns: %s", cellrt_last_error());
    options.min_area = -1;
    status = cellrt_label_measure(&mask_view, &labels_view, &intensity_view, &features_view, &options, NULL, NULL,
                                  NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "min_area"),
           "label_measure min_area -1: %s", cellrt_last_error());
  }

  /* The C layer's own refusals name the call, as the kernels' do: in a chain of calls "mask should not be NULL"
   * did not say which one. */
  {
    static uint8_t small_mask[4], small_out[4];
    const int64_t small_shape[2] = {2, 2};
    cellrt_tensor_t small_view, out_view;
    view(&small_view, small_mask, CELLRT_DTYPE_UINT8, 2, small_shape);
    view(&out_view, small_out, CELLRT_DTYPE_UINT8, 2, small_shape);
    status = cellrt_fill_holes(NULL, &out_view, 8, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT &&
               strcmp(cellrt_last_error(), "cellrt_fill_holes: mask should not be NULL") == 0,
           "NULL mask: %s", cellrt_last_error());
    small_view.struct_size = 0;
    status = cellrt_fill_holes(&small_view, &out_view, 8, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT &&
               strstr(cellrt_last_error(), "cellrt_fill_holes: mask.struct_size should be sizeof(cellrt_tensor_t)"),
           "struct_size 0: %s", cellrt_last_error());
    small_view.struct_size = sizeof small_view;
    small_view.dtype = 42;
    status = cellrt_fill_holes(&small_view, &out_view, 8, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT &&
               strstr(cellrt_last_error(), "cellrt_fill_holes: mask.dtype should be a cellrt_dtype_t"),
           "dtype 42: %s", cellrt_last_error());
    status = cellrt_drift_monitor_reset(NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT &&
               strcmp(cellrt_last_error(), "cellrt_drift_monitor_reset: monitor should not be NULL") == 0,
           "NULL monitor: %s", cellrt_last_error());
  }

  /* A counts struct the library cannot fill is refused before the work: the tiles stay as they were. */
  {
    cellrt_counts_t short_counts;
    const float before = tiles[0];
    memset(&short_counts, 0, sizeof short_counts);
    short_counts.struct_size = sizeof(size_t);
    tiles_view.device = CELLRT_DEVICE_CPU;
    tiles[0] = -12345.0f;
    status = cellrt_tile(&image_view, origins, &tiles_view, &tile_options, NULL, &short_counts);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && tiles[0] == -12345.0f &&
               strstr(cellrt_last_error(), "cellrt_tile: counts.struct_size"),
           "tile with a short counts struct: %d, tiles[0] %g: %s", (int)status, tiles[0], cellrt_last_error());
    tiles[0] = before;
  }

  /* Shapes the library cannot address are refused before any memory is touched: products of extents used to
   * wrap (2^40 x 2^40 ran as an empty image and returned OK) and sides beyond int32 were cut (2^32 + 4 rows
   * measured as 4). */
  {
    static uint8_t tiny_mask[16];
    static int32_t tiny_labels[16];
    static double tiny_features[12];
    static float tiny_values[16];
    const int64_t vast[2] = {(int64_t)1 << 40, (int64_t)1 << 40}, tall[2] = {((int64_t)1 << 32) + 4, 4};
    const int64_t one_object[2] = {1, 12}, minus_one[1] = {-1};
    const double q50 = 50.0;
    double p50 = 0.0;
    cellrt_tensor_t mask_view, labels_view, features_view, values_view;
    int64_t n = -1;
    view(&mask_view, tiny_mask, CELLRT_DTYPE_UINT8, 2, vast);
    view(&labels_view, tiny_labels, CELLRT_DTYPE_INT32, 2, vast);
    status = cellrt_label(&mask_view, &labels_view, NULL, NULL, &n);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "2^63 bytes"),
           "label of 2^40 x 2^40: %d, n %lld: %s", (int)status, (long long)n, cellrt_last_error());
    status = cellrt_fill_holes(&mask_view, &mask_view, 8, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT, "fill_holes of 2^40 x 2^40: %d: %s", (int)status,
           cellrt_last_error());
    view(&labels_view, tiny_labels, CELLRT_DTYPE_INT32, 2, tall);
    view(&features_view, tiny_features, CELLRT_DTYPE_FLOAT64, 2, one_object);
    status = cellrt_measure(&labels_view, 1, NULL, &features_view, NULL, NULL, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "sides should be below 2^31"),
           "measure of 2^32 + 4 rows: %d: %s", (int)status, cellrt_last_error());
    view(&values_view, tiny_values, CELLRT_DTYPE_FLOAT32, 1, minus_one);
    status = cellrt_percentiles(&values_view, &q50, 1, &p50, 0, NULL);
    EXPECT(status == CELLRT_STATUS_INVALID_ARGUMENT && strstr(cellrt_last_error(), "negative extent"),
           "percentiles of -1 values: %d: %s", (int)status, cellrt_last_error());
  }

  if (failures) return 1;
  printf("ok\n");
  return 0;
}
