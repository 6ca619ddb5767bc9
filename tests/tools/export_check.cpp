// SPDX-License-Identifier: Apache-2.0
// aplq-export-check MODEL_DIR EXPORT: reads an aplq export back through the library's loader
// (aplq::io::quantized_model; EXPORT is the .safetensors file or its manifest) and checks it
// against the source model: every quantized weight's codes, scales and zero points equal, byte
// for byte, what aplq::quantize (the oracle's packing, ref::set_code) makes of the source weights,
// and every other tensor equals its source bytes. Prints one line per problem; exit 0 when none.
#include <aplq/io/hf_model.hpp>
#include <aplq/io/quantized_model.hpp>
#include <aplq/quantize.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int problems = 0;

void problem(const std::string& what) {
  std::printf("MISMATCH %s\n", what.c_str());
  ++problems;
}

template <class F>
void check_weight(const aplq::io::quantized_weight& w, const std::vector<float>& src) {
  aplq::qmatrix<F> q;
  if (aplq::quantize<F>(src.data(), w.view.rows, w.view.cols, q) != aplq::status::ok)
    return problem(w.name + ": the source does not quantize");
  const auto& s = w.sizes;
  if (std::memcmp(q.codes().data(), w.view.codes, static_cast<std::size_t>(s.codes_bytes)) != 0)
    problem(w.name + ".codes differ from aplq::quantize of the source");
  if (std::memcmp(q.scales().data(), w.view.scales, static_cast<std::size_t>(s.scales_bytes)) != 0)
    problem(w.name + ".scales differ from aplq::quantize of the source");
  if (F::zero_point &&
      std::memcmp(q.zeros().data(), w.view.zeros, static_cast<std::size_t>(s.zeros_bytes)) != 0)
    problem(w.name + ".zeros differ from aplq::quantize of the source");
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: aplq-export-check MODEL_DIR EXPORT(.safetensors|manifest.json)\n");
    return 2;
  }
  aplq::io::hf_model model;
  aplq::io::quantized_model loaded;
  for (const aplq::io::error& e : {model.open(argv[1]), loaded.open(argv[2])})
    if (e) {
      std::fprintf(stderr, "aplq-export-check: error: %s\n", e.message.c_str());
      return 1;
    }
  std::size_t quantized = 0, kept = 0;
  for (const auto& ref : model.tensors()) {
    const aplq::io::tensor_info& t = *ref.info;
    if (const aplq::io::quantized_weight* w = loaded.find(t.name)) {
      std::vector<float> src(static_cast<std::size_t>(t.elements()));
      if (ref.file->read_float(t, src.data()) || t.shape.size() != 2 ||
          t.shape[0] != w->view.rows || t.shape[1] != w->view.cols) {
        problem(t.name + ": shape or dtype differs from the source");
        continue;
      }
      aplq::visit_format(w->view.format, [&](auto f) {
        check_weight<decltype(f)>(*w, src);
        return aplq::status::ok;
      });
      ++quantized;
      continue;
    }
    const aplq::io::tensor_info* out = loaded.file().find(t.name);
    if (out == nullptr)
      problem(t.name + ": missing from the export");
    else if (out->type != t.type || out->shape != t.shape ||
             std::memcmp(loaded.file().data(*out), ref.file->data(t), t.bytes()) != 0)
      problem(t.name + ": differs from the source tensor");
    ++kept;
  }
  if (quantized != loaded.weights().size())
    problem("the export holds " + std::to_string(loaded.weights().size()) +
            " quantized weights, the source " + std::to_string(quantized));
  std::printf("%zu quantized weights equal the oracle's packing, %zu tensors kept, %d problems\n",
              quantized, kept, problems);
  return problems == 0 ? 0 : 1;
}
