// Umbrella header of the cellrt C++ API.
//
// Threads: every function is reentrant and may run on several threads at
// once on distinct outputs; a DriftMonitor serves one thread at a time.
// c_api.h ("Threads") says how concurrent CPU calls share the worker pool
// and which CUDA device a call runs on - the same for both APIs.
#pragma once

#include "cellrt/contour.h"
#include "cellrt/drift.h"
#include "cellrt/fill_holes.h"
#include "cellrt/filter.h"
#include "cellrt/grow.h"
#include "cellrt/histogram.h"
#include "cellrt/label.h"
#include "cellrt/label_measure.h"
#include "cellrt/measure.h"
#include "cellrt/mmd.h"
#include "cellrt/nms.h"
#include "cellrt/morphology.h"
#include "cellrt/remove_small_objects.h"
#include "cellrt/resize.h"
#include "cellrt/stitch.h"
#include "cellrt/tile.h"
#include "cellrt/types.h"
#include "cellrt/watershed.h"
