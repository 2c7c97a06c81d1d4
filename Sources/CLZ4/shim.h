#ifndef PHAROS_CLZ4_SHIM_H
#define PHAROS_CLZ4_SHIM_H
#include <lz4.h>
#endif
