// Kernel names for the emulator's messages. Kernels are mostly internal functions (anonymous
// namespaces, templates), which the dynamic symbol table does not list, so the address is looked
// up in the executable's full symbol table (.symtab) and demangled.
#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "launch.h"

namespace castling::emu {

namespace {

struct SymbolTable {
  bool positionIndependent = true;
  std::map<std::uint64_t, std::pair<std::uint64_t, std::string>> functions;  // start -> (size, mangled name)
};

SymbolTable load(const char* path) {
  SymbolTable table;
  std::ifstream file(path, std::ios::binary);
  std::vector<char> image((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (image.size() < sizeof(Elf64_Ehdr)) return table;
  Elf64_Ehdr header;
  std::memcpy(&header, image.data(), sizeof header);
  if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64) return table;
  table.positionIndependent = header.e_type == ET_DYN;
  if (header.e_shoff + std::uint64_t(header.e_shnum) * sizeof(Elf64_Shdr) > image.size()) return table;
  std::vector<Elf64_Shdr> sections(header.e_shnum);
  std::memcpy(sections.data(), image.data() + header.e_shoff, sections.size() * sizeof(Elf64_Shdr));
  for (const Elf64_Shdr& s : sections) {
    if (s.sh_type != SHT_SYMTAB || s.sh_link >= sections.size()) continue;
    const Elf64_Shdr& strings = sections[s.sh_link];
    if (s.sh_offset + s.sh_size > image.size() || strings.sh_offset + strings.sh_size > image.size()) continue;
    for (std::uint64_t off = 0; off + sizeof(Elf64_Sym) <= s.sh_size; off += sizeof(Elf64_Sym)) {
      Elf64_Sym sym;
      std::memcpy(&sym, image.data() + s.sh_offset + off, sizeof sym);
      if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_value == 0 || sym.st_name >= strings.sh_size) continue;
      table.functions[sym.st_value] = {sym.st_size, std::string(image.data() + strings.sh_offset + sym.st_name)};
    }
  }
  return table;
}

std::string demangle(const std::string& mangled) {
  int status = 0;
  char* name = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
  if (status != 0 || !name) return mangled;
  std::string out(name);
  std::free(name);
  return out;
}

}  // namespace

std::string kernelName(const void* kernel) {
  Dl_info info{};
  if (dladdr(kernel, &info) && info.dli_sname) return demangle(info.dli_sname);
  static std::mutex mutex;
  static std::map<std::string, SymbolTable> tables;
  std::lock_guard<std::mutex> lock(mutex);
  const std::string path = info.dli_fname && *info.dli_fname ? info.dli_fname : "/proc/self/exe";
  auto it = tables.find(path);
  if (it == tables.end()) {
    SymbolTable t = load(path.c_str());
    if (t.functions.empty() && path != "/proc/self/exe") t = load("/proc/self/exe");
    it = tables.emplace(path, std::move(t)).first;
  }
  const SymbolTable& t = it->second;
  const auto address = reinterpret_cast<std::uint64_t>(kernel);
  const std::uint64_t key = t.positionIndependent ? address - reinterpret_cast<std::uint64_t>(info.dli_fbase) : address;
  auto f = t.functions.find(key);
  if (f != t.functions.end()) return demangle(f->second.second);
  std::ostringstream out;
  out << "kernel at " << kernel;
  return out.str();
}

}  // namespace castling::emu
