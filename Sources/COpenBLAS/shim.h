#ifndef PHAROS_COPENBLAS_SHIM_H
#define PHAROS_COPENBLAS_SHIM_H
// CBLAS from OpenBLAS plus the LAPACK routines Pharos calls. OpenBLAS exports LAPACK but ships
// no LAPACKE and no prototypes, so they are declared here. Fortran calling convention: every
// argument by pointer, and each CHARACTER argument adds a hidden trailing size_t length.
#include <stddef.h>
#include <cblas.h>

/// Symmetric eigen-decomposition (divide and conquer), single precision.
void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
             float *w, float *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_len, size_t uplo_len);

/// Singular value decomposition (divide and conquer), single precision.
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s,
             float *u, const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork,
             int *iwork, int *info, size_t jobz_len);

#endif
