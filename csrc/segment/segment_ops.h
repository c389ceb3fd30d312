// Backends of label, measure, filters and morphology; arguments are validated
// by the public functions (label.cpp, measure.cpp, ...) before these run.
#pragma once

#include <cstdint>
#include <vector>

#include "cellrt/contour.h"
#include "cellrt/filter.h"
#include "cellrt/label.h"
#include "cellrt/label_measure.h"
#include "cellrt/measure.h"
#include "segment/filter_kernel.h"

namespace cellrt::detail {

int64_t label_cpu(const uint8_t* mask, int32_t* labels, int32_t height, int32_t width, int32_t connectivity,
                  int32_t num_threads);
int64_t label_cuda(const uint8_t* mask, int32_t* labels, int32_t height, int32_t width, int32_t connectivity,
                   void* stream);

// The argument checks of label and measure, shared with label_measure (op
// names the function in the messages). check_measure_views wants features of
// `rows` rows, or any number for rows < 0; it returns whether there are
// intensity channels.
void check_label_views(const char* op, const TensorView& mask, const TensorView& labels, int32_t connectivity);
bool check_measure_views(const char* op, const TensorView& labels, const TensorView* intensities,
                         const TensorView& features, int64_t rows);

// Labels without waiting for the stream; the number of components (those of
// min_area pixels or more when min_area > 1) is written to device_count.
void label_cuda_async(const uint8_t* mask, int32_t* labels, int32_t height, int32_t width, int32_t connectivity,
                      int64_t min_area, int32_t* device_count, void* stream);
// Measures objects 1..min(count, capacity) into features' first rows without
// waiting for the stream; count is *device_count, or capacity when it is
// null. Pixels labelled < 0 or above count add to *device_out_of_range.
void measure_cuda_async(const TensorView& labels, const int32_t* device_count, int64_t capacity,
                        const TensorView* intensities, double* features, unsigned long long* device_out_of_range,
                        void* stream);
LabelMeasureResult label_measure_cuda(const uint8_t* mask, const TensorView& labels, int32_t connectivity,
                                      int64_t min_area, int64_t capacity, const TensorView* intensities,
                                      double* features, void* stream);
// After label_measure's measure step: labels numbered 1..count leave no
// pixel out of range, so any is a broken kernel (std::logic_error), not bad
// input.
void check_labels_within_count(unsigned long long out_of_range);
// label_measure_cuda's kernel bodies run on the host, one after another
// (tests of the CUDA arithmetic without a GPU).
LabelMeasureResult label_measure_by_pixels(const uint8_t* mask, const TensorView& labels, int32_t connectivity,
                                           int64_t min_area, int64_t capacity, const TensorView* intensities,
                                           double* features);

MeasureResult measure_cpu(const TensorView& labels, int64_t num_objects, const TensorView* intensities,
                          double* features, int32_t num_threads);
MeasureResult measure_cuda(const TensorView& labels, int64_t num_objects, const TensorView* intensities,
                           double* features, void* stream);

HoleContours hole_contours_cuda(const int32_t* labels, int32_t height, int32_t width, int64_t num_objects,
                                void* stream);
int64_t contours_cuda(const int32_t* labels, int32_t height, int32_t width, int64_t num_objects, int64_t* offsets,
                      int32_t* points, double* perimeter, void* stream);
void fill_holes_cuda(const uint8_t* mask, uint8_t* out, int32_t height, int32_t width, int32_t connectivity,
                     void* stream);
void histogram_cuda(const void* data, bool sixteen_bit, int64_t n, int64_t* counts, void* stream);

void binary_morphology_cpu(const uint8_t* mask, uint8_t* out, int32_t height, int32_t width, int32_t radius,
                           bool dilate, const int16_t* half_widths, int32_t num_threads);
void binary_morphology_cuda(const uint8_t* mask, uint8_t* out, int32_t height, int32_t width, int32_t radius,
                            bool dilate, const int16_t* half_widths, void* stream);

// The gaussian's weights w[0 .. 2r] (radius r = (size - 1) / 2); empty when the
// radius is 0 (sigma 0 or truncated to nothing: the blur is a copy).
std::vector<float> gaussian_taps(double sigma, double truncate);

// The recursive gaussian's poles and gains for this sigma (> 0), and the
// warm-up after which a truncated start changes no output by more than
// ~1e-8 of the largest input.
RecursiveGaussianCoefficients recursive_gaussian_coefficients(double sigma);

void gaussian_blur_cuda(const float* image, float* out, int32_t height, int32_t width, double sigma, double truncate,
                        int32_t mode, void* stream);
void gaussian_blur_recursive_cuda(const float* image, float* out, int32_t height, int32_t width, double sigma,
                                  int32_t mode, void* stream);
void box_mean_cuda(const float* image, float* out, int32_t height, int32_t width, int32_t size_y, int32_t size_x,
                   int32_t mode, void* stream);
// The CUDA passes run on the host, single-threaded (tests of the CUDA arithmetic without a GPU).
void gaussian_blur_by_lines(const float* image, float* out, int32_t height, int32_t width, double sigma,
                            double truncate, int32_t mode);
void gaussian_blur_recursive_by_lines(const float* image, float* out, int32_t height, int32_t width, double sigma,
                                      int32_t mode);
void box_mean_by_lines(const float* image, float* out, int32_t height, int32_t width, int32_t size_y, int32_t size_x,
                       int32_t mode);

void gaussian_blur_cpu(const TensorView& image, const TensorView& out, double sigma, double truncate,
                       const FilterOptions& options);
void gaussian_blur_recursive_cpu(const TensorView& image, const TensorView& out, double sigma,
                                 const FilterOptions& options);
void box_mean_cpu(const TensorView& image, const TensorView& out, int32_t size_y, int32_t size_x,
                  const FilterOptions& options);

}  // namespace cellrt::detail
