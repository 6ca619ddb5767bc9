// SPDX-License-Identifier: Apache-2.0
// doctest main of aplq-cuda-tests. Without a usable CUDA device the suite cannot say anything,
// so it says so and exits 77, which Meson reports as SKIP (never as a pass); any other failure
// to query the devices is an error.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include <cuda_runtime.h>

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
      (e == cudaSuccess && devices == 0)) {
    std::printf("no CUDA device: skipping the CUDA suite (%s)\n",
                e == cudaSuccess ? "no devices found" : cudaGetErrorString(e));
    return 77;
  }
  if (e != cudaSuccess) {
    std::fprintf(stderr, "aplq-cuda-tests: error: cudaGetDeviceCount failed: %s (%s)\n",
                 cudaGetErrorName(e), cudaGetErrorString(e));
    return 1;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    std::printf("CUDA device 0: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  doctest::Context context(argc, argv);
  return context.run();
}
