// Bindings of mask_nms and matrix_nms.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "cellrt/nms.h"
#include "python/array_view.h"

namespace py = pybind11;

namespace cellrt::python {

namespace {

// The instance arrays of a host call; classes may be None (data == nullptr).
struct HostInstances {
  TensorView boxes, scores, classes, offsets, data;
};

HostInstances host_instances(const py::array& boxes, const py::array& scores, const py::object& classes,
                             const py::array& mask_offsets, const py::array& mask_data) {
  HostInstances v;
  v.boxes = host_view(boxes, "boxes", false);
  v.scores = host_view(scores, "scores", false);
  v.classes.data = nullptr;
  if (!classes.is_none()) v.classes = host_view(classes.cast<py::array>(), "classes", false);
  v.offsets = host_view(mask_offsets, "mask_offsets", false);
  v.data = host_view(mask_data, "mask_data", false);
  return v;
}

MaskNmsOptions mask_nms_options(float iou_threshold, float ios_threshold, bool class_aware, int num_threads) {
  MaskNmsOptions options;
  options.iou_threshold = iou_threshold;
  options.ios_threshold = ios_threshold;
  options.class_aware = class_aware;
  options.num_threads = num_threads;
  return options;
}

int64_t mask_nms_host(const py::array& boxes, const py::array& scores, const py::object& classes,
                      const py::array& mask_offsets, const py::array& mask_data, py::array& keep, float iou_threshold,
                      float ios_threshold, bool class_aware, int num_threads) {
  const HostInstances v = host_instances(boxes, scores, classes, mask_offsets, mask_data);
  const TensorView k = host_view(keep, "keep", true);
  const MaskNmsOptions options = mask_nms_options(iou_threshold, ios_threshold, class_aware, num_threads);
  py::gil_scoped_release release;
  return mask_nms(v.boxes, v.scores, v.classes, v.offsets, v.data, k, options);
}

int64_t mask_nms_device(uintptr_t boxes, uintptr_t scores, uintptr_t classes, uintptr_t mask_offsets,
                        uintptr_t mask_data, int64_t mask_size, uintptr_t keep, int64_t n, float iou_threshold,
                        float ios_threshold, bool class_aware) {
  const TensorView b = contiguous_device_view(boxes, static_cast<int32_t>(DType::kInt32), {n, 4}, "boxes");
  const TensorView s = contiguous_device_view(scores, static_cast<int32_t>(DType::kFloat32), {n}, "scores");
  TensorView c;
  c.data = nullptr;
  if (classes != 0) c = contiguous_device_view(classes, static_cast<int32_t>(DType::kInt32), {n}, "classes");
  const TensorView o = contiguous_device_view(mask_offsets, static_cast<int32_t>(DType::kInt64), {n + 1},
                                              "mask_offsets");
  const TensorView d = contiguous_device_view(mask_data, static_cast<int32_t>(DType::kUInt8), {mask_size},
                                              "mask_data");
  const TensorView k = contiguous_device_view(keep, static_cast<int32_t>(DType::kUInt8), {n}, "keep");
  const MaskNmsOptions options = mask_nms_options(iou_threshold, ios_threshold, class_aware, /*num_threads=*/0);
  py::gil_scoped_release release;
  return mask_nms(b, s, c, o, d, k, options);
}

void matrix_nms_host(const py::array& boxes, const py::array& scores, const py::object& classes,
                     const py::array& mask_offsets, const py::array& mask_data, py::array& decayed, int kernel,
                     double sigma, bool class_aware, int num_threads) {
  const HostInstances v = host_instances(boxes, scores, classes, mask_offsets, mask_data);
  const TensorView out = host_view(decayed, "decayed", true);
  MatrixNmsOptions options;
  options.kernel = static_cast<MatrixNmsKernel>(kernel);
  options.sigma = sigma;
  options.class_aware = class_aware;
  options.num_threads = num_threads;
  py::gil_scoped_release release;
  matrix_nms(v.boxes, v.scores, v.classes, v.offsets, v.data, out, options);
}

}  // namespace

void register_nms(py::module_& m) {
  m.def("mask_nms", &mask_nms_host, py::arg("boxes"), py::arg("scores"), py::arg("classes"),
        py::arg("mask_offsets"), py::arg("mask_data"), py::arg("keep"), py::arg("iou_threshold"),
        py::arg("ios_threshold"), py::arg("class_aware"), py::arg("num_threads") = 0,
        "Greedy mask NMS over boxes[N,4] int32, scores[N] float32, classes[N] int32 or None and the masks' CSR "
        "(offsets[N+1] int64, data uint8); fills keep[N] uint8, returns the number kept.");
  m.def("matrix_nms", &matrix_nms_host, py::arg("boxes"), py::arg("scores"), py::arg("classes"),
        py::arg("mask_offsets"), py::arg("mask_data"), py::arg("decayed"), py::arg("kernel"), py::arg("sigma"),
        py::arg("class_aware"), py::arg("num_threads") = 0,
        "Matrix NMS: decayed[N] float32 scores (kernel 0 gaussian, 1 linear).");
  m.def("mask_nms_cuda", &mask_nms_device, py::arg("boxes"), py::arg("scores"), py::arg("classes"),
        py::arg("mask_offsets"), py::arg("mask_data"), py::arg("mask_size"), py::arg("keep"), py::arg("n"),
        py::arg("iou_threshold"), py::arg("ios_threshold"), py::arg("class_aware"),
        "mask_nms on contiguous device buffers (classes 0: none); synchronises.");
}

}  // namespace cellrt::python
