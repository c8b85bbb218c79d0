// The packed engine's whole-model op (beexbench/engine/_engine.cpp ``infer``) run as a program,
// for tests/arm64/engine_check.py: built with aarch64-linux-gnu-g++ against the aarch64 torch
// wheel's libtorch_cpu / libc10 and run under qemu-aarch64-static (no Python on the arm64 side).
//
//   engine_main CASE_DIR OUT_DIR ISA...        (ISA: neon, portable, ...)
//
// CASE_DIR/manifest.txt, one record a line (tensors are raw little-endian files CASE_DIR/NAME.bin):
//   tensor NAME DTYPE NDIM DIM...               DTYPE: f32 f64 i64 i32 i16 i8 u8 bool
//   case NAME IDS MASK FPARAMS WORDS META CODES SCALE LN_EPS RULE A B MIN_EXIT LOWER
// For every case, ISA and thread count (1, 2): OUT_DIR/NAME.ISA.tT.logits.bin (f32 [B, C]) and
// .blocks.bin (i64 [B]). Exit status 0 when every call ran; a failed call prints and exits 1.
#include "_engine.cpp"  // -I beexbench/engine (or a copy of it)

#include <ATen/Parallel.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

namespace {

at::ScalarType dtype_of(const std::string& s) {
  static const std::map<std::string, at::ScalarType> m = {
      {"f32", at::kFloat}, {"f64", at::kDouble}, {"i64", at::kLong}, {"i32", at::kInt},
      {"i16", at::kShort}, {"i8", at::kChar},    {"u8", at::kByte},  {"bool", at::kBool}};
  auto it = m.find(s);
  TORCH_CHECK(it != m.end(), "engine_main: unknown dtype ", s);
  return it->second;
}

at::Tensor read_tensor(const std::string& path, at::ScalarType t, const std::vector<int64_t>& shape) {
  at::Tensor x = at::empty(shape, at::TensorOptions().dtype(t));
  std::ifstream f(path, std::ios::binary);
  TORCH_CHECK(f, "engine_main: cannot open ", path);
  const auto n = static_cast<std::streamsize>(x.nbytes());
  f.read(static_cast<char*>(x.data_ptr()), n);
  TORCH_CHECK(f.gcount() == n, "engine_main: ", path, " is short");
  return x;
}

void write_tensor(const std::string& path, const at::Tensor& x) {
  const at::Tensor c = x.contiguous();
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  TORCH_CHECK(f, "engine_main: cannot write ", path);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: engine_main CASE_DIR OUT_DIR ISA...\n";
    return 2;
  }
  const std::string dir = argv[1], out = argv[2];
  try {
    std::map<std::string, at::Tensor> T;
    std::ifstream man(dir + "/manifest.txt");
    TORCH_CHECK(man, "engine_main: no manifest in ", dir);
    std::string line;
    int calls = 0;
    while (std::getline(man, line)) {
      std::istringstream in(line);
      std::string kind, name;
      in >> kind >> name;
      if (kind == "tensor") {
        std::string dt;
        int64_t nd = 0;
        in >> dt >> nd;
        std::vector<int64_t> shape(nd);
        for (auto& s : shape) in >> s;
        T[name] = read_tensor(dir + "/" + name + ".bin", dtype_of(dt), shape);
      } else if (kind == "case") {
        std::string k[7];
        for (auto& s : k) in >> s;
        double ln_eps, a, b;
        int64_t rule, min_exit, lower;
        in >> ln_eps >> rule >> a >> b >> min_exit >> lower;
        TORCH_CHECK(!in.fail(), "engine_main: bad case line: ", line);
        for (int i = 3; i < argc; ++i) {
          const std::string isa = argv[i];
          const std::string got = beex_whole::engine_isa(isa);
          TORCH_CHECK(got == isa, "engine_main: asked for ", isa, ", the engine runs ", got);
          for (int threads : {1, 2}) {
            at::set_num_threads(threads);
            auto r = beex_whole::infer(T.at(k[0]), T.at(k[1]), T.at(k[2]), T.at(k[3]), T.at(k[4]), T.at(k[5]),
                                       T.at(k[6]), ln_eps, rule, a, b, min_exit, lower != 0);
            const std::string stem = out + "/" + name + "." + isa + ".t" + std::to_string(threads);
            write_tensor(stem + ".logits.bin", std::get<0>(r));
            write_tensor(stem + ".blocks.bin", std::get<1>(r));
            ++calls;
          }
        }
      } else if (!kind.empty()) {
        std::cerr << "engine_main: unknown record " << kind << "\n";
        return 2;
      }
    }
    std::printf("engine_main: %d infer calls\n", calls);
  } catch (const std::exception& e) {
    std::cerr << "engine_main: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
