/* zlib (Debian zlib1g-dev, installed by tools/setup), for MMPolicyCore's
   CompressibilityEstimate: deflate at level 1 with fixed codes as a stand-in for zram's compressor. */
#ifndef MMPOLICY_CZLIB_SHIM_H
#define MMPOLICY_CZLIB_SHIM_H
#include <zlib.h>
#endif
