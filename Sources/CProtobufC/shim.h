#ifndef PHAROS_CPROTOBUFC_SHIM_H
#define PHAROS_CPROTOBUFC_SHIM_H
#include <protobuf-c/protobuf-c.h>
#endif
