// Umbrella header of the cellrt C++ API.
#pragma once

#include "cellrt/contour.h"
#include "cellrt/drift.h"
#include "cellrt/fill_holes.h"
#include "cellrt/filter.h"
#include "cellrt/grow.h"
#include "cellrt/histogram.h"
#include "cellrt/label.h"
#include "cellrt/measure.h"
#include "cellrt/mmd.h"
#include "cellrt/nms.h"
#include "cellrt/morphology.h"
#include "cellrt/stitch.h"
#include "cellrt/tile.h"
#include "cellrt/types.h"
#include "cellrt/watershed.h"
