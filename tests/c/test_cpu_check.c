/* The C ABI on a CPU that cannot run the library's x86-64-v3 code: every
 * call that returns a status refuses with CELLRT_STATUS_NOT_COMPILED and a
 * message naming the CPU level and the rebuild option - before any argument
 * check, and before any kernel could die on an illegal instruction. Run by
 * tests/test_build.py under an emulated older CPU, or with
 * CELLRT_TEST_CPU_LACKS_X86_64_V3=1; prints "ok" and exits 0 on success. */
#include <stdio.h>
#include <string.h>

#include "cellrt/c_api.h"

static int failures = 0;

static void expect_refused(cellrt_status_t status, const char* call) {
  const char* message = cellrt_last_error();
  if (status != CELLRT_STATUS_NOT_COMPILED || strstr(message, "x86-64-v3") == NULL ||
      strstr(message, "-DCELLRT_X86_64_V3=OFF") == NULL) {
    fprintf(stderr, "FAILED %s: status %d, message \"%s\"\n", call, (int)status, message);
    ++failures;
  }
}

#define REFUSED(call) expect_refused(call, #call)

int main(void) {
  static uint8_t pixels[4 * 4];
  static int64_t counts[256];
  const int64_t shape[2] = {4, 4}, bins[1] = {256};
  cellrt_tensor_t image, histogram;
  static int not_a_monitor;
  cellrt_drift_monitor_t* monitor = (cellrt_drift_monitor_t*)&not_a_monitor;
  int64_t total = 0;

  /* What a caller reports the refusal with still works. */
  printf("cellrt %s, C API %d, CUDA %d, devices %d\n", cellrt_version(), (int)cellrt_c_api_version(),
         (int)cellrt_has_cuda(), (int)cellrt_cuda_device_count());
  if (cellrt_c_api_version() != CELLRT_C_API_VERSION || cellrt_cuda_device_count() != 0) ++failures;

  /* Valid arguments: without the check this histogram would run cellrt_core's code. */
  memset(&image, 0, sizeof image);
  image.struct_size = sizeof image;
  image.data = pixels;
  image.dtype = CELLRT_DTYPE_UINT8;
  image.ndim = 2;
  image.shape[0] = shape[0], image.shape[1] = shape[1];
  image.strides[0] = 4, image.strides[1] = 1;
  histogram = image;
  histogram.data = counts;
  histogram.dtype = CELLRT_DTYPE_INT64;
  histogram.ndim = 1;
  histogram.shape[0] = bins[0];
  histogram.strides[0] = 1;
  REFUSED(cellrt_histogram(&image, &histogram, 1, NULL));

  /* Every other entry point that returns a status, with arguments that would otherwise be rejected. */
  REFUSED(cellrt_tile(NULL, NULL, NULL, NULL, NULL, NULL));
  REFUSED(cellrt_stitch(NULL, NULL, NULL, NULL, NULL, NULL));
  REFUSED(cellrt_label(NULL, NULL, NULL, NULL, NULL));
  REFUSED(cellrt_measure(NULL, 0, NULL, NULL, NULL, NULL, NULL));
  REFUSED(cellrt_mask_nms(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
  REFUSED(cellrt_rbf_kernel(NULL, NULL, 1.0, NULL, 0, NULL));
  REFUSED(cellrt_drift_monitor_create(NULL, 1.0, 2, 0.5, &monitor));
  REFUSED(cellrt_drift_monitor_update(NULL, NULL, 0, NULL));
  REFUSED(cellrt_drift_monitor_reset(NULL));
  REFUSED(cellrt_gaussian_blur(NULL, NULL, 1.0, 4.0, NULL, NULL));
  REFUSED(cellrt_box_mean(NULL, NULL, 3, 3, NULL, NULL));
  REFUSED(cellrt_fill_holes(NULL, NULL, 8, NULL));
  REFUSED(cellrt_binary_morphology(NULL, NULL, 1, 0, NULL, NULL));
  REFUSED(cellrt_contours(NULL, 0, NULL, NULL, NULL, 0, NULL, &total));
  REFUSED(cellrt_distance_transform(NULL, NULL, 0));
  REFUSED(cellrt_h_maxima_seeds(NULL, 1.0f, NULL, 8, NULL));
  REFUSED(cellrt_watershed(NULL, NULL, NULL, 8, NULL));
  REFUSED(cellrt_gaussian_blur_recursive(NULL, NULL, 1.0, NULL, NULL));
  REFUSED(cellrt_tile_origins(0, 0, 0, 0, -1, -1, NULL, 0, &total));
  REFUSED(cellrt_remove_small_objects(NULL, NULL, 1, 0, NULL));
  REFUSED(cellrt_percentiles(NULL, NULL, 0, NULL, 0, NULL));
  REFUSED(cellrt_float_histogram(NULL, 4, NULL, NULL, 0, NULL));
  REFUSED(cellrt_label_measure(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
  REFUSED(cellrt_watershed_ex(NULL, NULL, NULL, 8, 1, NULL));
  if (monitor != NULL) {
    fprintf(stderr, "FAILED: a refused cellrt_drift_monitor_create left its monitor set\n");
    ++failures;
  }
  cellrt_drift_monitor_destroy(monitor);

  if (failures) return 1;
  printf("%s\nok\n", cellrt_last_error());
  return 0;
}
