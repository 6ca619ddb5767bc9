// SPDX-License-Identifier: Apache-2.0
// The C++ half of the numpy compatibility test (tests/io/npz_numpy.py): writes a sample .npz with
// npz_writer — every dtype, 1-D and 2-D shapes with odd sizes, a scalar, an empty array, a UTF-8
// key, each streamed in odd chunks — whose values are formulas of the flat index that the Python
// side recomputes; or reads an archive numpy wrote and prints one line per array for Python to
// compare.
//
//   npz_writer_main [--zip64] OUT.npz   write the sample (--zip64: force ZIP64 records)
//   npz_writer_main --read IN.npz       print "key<TAB>descr<TAB>d0,d1,...<TAB>fnv1a64-hex"
#include <aplq/half.hpp>
#include <aplq/io/npz.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using aplq::io::npy_dtype;

template <class T>
std::vector<std::uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<std::uint8_t> b(v.size() * sizeof(T));
  if (!b.empty())
    std::memcpy(b.data(), v.data(), b.size());
  return b;
}

struct sample {
  std::string key;
  npy_dtype type;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

std::int64_t count(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape)
    n *= d;
  return n;
}

// Keep in step with EXPECTED in npz_numpy.py.
template <class T, class F>
sample make(const std::string& key, npy_dtype type, std::vector<std::int64_t> shape, F f) {
  std::vector<T> v(static_cast<std::size_t>(count(shape)));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = f(static_cast<std::int64_t>(i));
  return {key, type, std::move(shape), bytes_of(v)};
}

std::vector<sample> samples() {
  using u8 = std::uint8_t;
  std::vector<sample> s;
  s.push_back(make<u8>("layers.0.q_proj.codes", npy_dtype::u8, {37, 29},
                       [](std::int64_t i) { return static_cast<u8>((i * 37 + 11) % 256); }));
  s.push_back(
      make<std::uint16_t>("layers.0.q_proj.scales", npy_dtype::f16, {37, 3}, [](std::int64_t i) {
        const float x = static_cast<float>(i % 200 - 100) * 0.125f;
        return aplq::float_to_half(x).bits;
      }));
  s.push_back(make<float>("layers.0.q_proj.zeros", npy_dtype::f32, {37, 3}, [](std::int64_t i) {
    return static_cast<float>(i % 1000 - 500) / 16.0f;
  }));
  s.push_back(make<std::uint16_t>("u16", npy_dtype::u16, {301}, [](std::int64_t i) {
    return static_cast<std::uint16_t>((i * 2654435761LL) % 65536);
  }));
  s.push_back(make<std::int8_t>("i8", npy_dtype::i8, {5, 7}, [](std::int64_t i) {
    return static_cast<std::int8_t>((i * 13) % 256 - 128);
  }));
  s.push_back(make<std::int32_t>("i32", npy_dtype::i32, {1001}, [](std::int64_t i) {
    return static_cast<std::int32_t>(i * 100003 - 50000000);
  }));
  s.push_back(make<double>("f64", npy_dtype::f64, {3, 3},
                           [](std::int64_t i) { return static_cast<double>(i) / 3.0 - 1.0; }));
  s.push_back(make<u8>("big.codes", npy_dtype::u8, {513, 1031},
                       [](std::int64_t i) { return static_cast<u8>((i * 7 + (i >> 10)) % 256); }));
  s.push_back(make<float>("gewicht_\xc3\xa4", npy_dtype::f32, {2},
                          [](std::int64_t i) { return static_cast<float>(i) * -4.0f + 1.5f; }));
  s.push_back(make<double>("scalar", npy_dtype::f64, {}, [](std::int64_t) { return 42.25; }));
  s.push_back(make<float>("empty", npy_dtype::f32, {0, 4}, [](std::int64_t) { return 0.0f; }));
  return s;
}

void check(const aplq::io::error& e) {
  if (e)
    throw std::runtime_error(e.message);
}

void write_sample(const std::string& path, bool zip64) {
  aplq::io::npz_writer w;
  w.force_zip64(zip64);
  check(w.open(path));
  const std::size_t chunk = 4093; // odd: chunks split elements
  for (const sample& s : samples()) {
    check(w.begin_array(s.key, s.type, s.shape));
    for (std::size_t at = 0; at < s.bytes.size(); at += chunk)
      check(w.append(s.bytes.data() + at, std::min(chunk, s.bytes.size() - at)));
    check(w.end_array());
  }
  check(w.commit());
}

void list(const std::string& path) {
  aplq::io::npz_reader r;
  check(r.open(path));
  for (const aplq::io::npz_array& a : r.arrays()) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (std::uint64_t k = 0; k < a.bytes; ++k)
      h = (h ^ a.data[k]) * 0x100000001b3ull;
    std::string dims;
    for (std::size_t k = 0; k < a.shape.size(); ++k)
      dims += (k ? "," : "") + std::to_string(a.shape[k]);
    std::printf("%s\t%s\t%s\t%016" PRIx64 "\n", a.key.c_str(), aplq::io::npy_descr(a.type),
                dims.c_str(), h);
  }
}

} // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "--read")
      list(args[1]);
    else if (args.size() == 2 && args[0] == "--zip64")
      write_sample(args[1], true);
    else if (args.size() == 1 && args[0][0] != '-')
      write_sample(args[0], false);
    else
      throw std::runtime_error("usage: npz_writer_main [--zip64] OUT.npz | --read IN.npz");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "npz_writer_main: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
