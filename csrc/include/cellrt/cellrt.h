// Umbrella header of the cellrt C++ API.
#pragma once

#include "cellrt/stitch.h"
#include "cellrt/tile.h"
#include "cellrt/types.h"
