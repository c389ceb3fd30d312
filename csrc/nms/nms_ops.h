// The CUDA side of mask_nms (nms.cpp validates, ranks and scans on the host).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cellrt::detail {

// hits[p] = whether instance pair_index[2p] (the higher-ranked) suppresses
// pair_index[2p + 1], from the masks on the device; synchronises.
void mask_nms_hits_cuda(const int32_t* boxes, const int64_t* mask_offsets, const uint8_t* mask_data, int64_t n,
                        const std::vector<int32_t>& pair_index, float iou_threshold, float ios_threshold,
                        std::vector<uint8_t>& hits);
void copy_to_host(void* dst, const void* device_src, size_t bytes);
void copy_to_device(void* device_dst, const void* src, size_t bytes);

}  // namespace cellrt::detail
