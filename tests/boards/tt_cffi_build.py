"""Build small cffi extension modules from runtime_c sources for the host tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from cffi import FFI

REPO = Path(__file__).resolve().parents[2]
RUNTIME_INC = REPO / "runtime_c" / "include"
RUNTIME_SRC = REPO / "runtime_c" / "src"

FRAME_CDEF = """
typedef enum { TT_FRAME_NEED_MORE, TT_FRAME_READY, TT_FRAME_REJECTED, ... } tt_frame_event;
typedef enum { TT_FRAME_REJECT_NONE, TT_FRAME_REJECT_HEADER_CHECK, TT_FRAME_REJECT_VERSION,
               TT_FRAME_REJECT_TYPE, TT_FRAME_REJECT_LENGTH, TT_FRAME_REJECT_CRC,
               TT_FRAME_REJECT_COUNT, ... } tt_frame_reject;
typedef struct {
    uint8_t type;
    uint8_t seq;
    uint8_t seq_valid;
    uint32_t payload_len;
    uint32_t frames_ok;
    uint32_t rejected[6];
    uint32_t bytes_skipped;
    tt_frame_reject last_reject;
    ...;
} tt_frame_parser;
void tt_frame_parser_init(tt_frame_parser *p, uint8_t *buf, uint32_t cap);
tt_frame_event tt_frame_parser_push(tt_frame_parser *p, uint8_t byte);
size_t tt_frame_parser_feed(tt_frame_parser *p, const uint8_t *data, size_t n, tt_frame_event *event);
uint32_t tt_frame_parser_rejected_total(const tt_frame_parser *p);
size_t tt_frame_encode(uint8_t *out, size_t out_cap, uint8_t type, uint8_t seq, const uint8_t *payload, size_t len);
int tt_frame_split_sample_label(const uint8_t *payload, uint32_t len, const uint8_t **label,
                                uint32_t *label_len, const uint8_t **sample, uint32_t *sample_len);
uint32_t tt_frame_crc32(uint32_t crc, const uint8_t *data, size_t n);
uint8_t tt_frame_crc8(const uint8_t *data, size_t n);
const char *tt_frame_reject_str(tt_frame_reject reason);
const char *tt_frame_type_str(uint8_t type);
void *malloc(size_t n);
void free(void *p);
"""

FRAME_SOURCE = """
#include <stdlib.h>
#include "tt_frame.h"
"""

CKPT_CDEF = """
typedef enum { TT_CKPT_OK, TT_CKPT_NONE, TT_CKPT_TOO_BIG, TT_CKPT_IO, TT_CKPT_BAD_ARG, ... } tt_ckpt_status;
typedef struct {
    int (*erase)(void *ctx, uint32_t offset, uint32_t len);
    int (*write)(void *ctx, uint32_t offset, const void *data, uint32_t len);
    int (*read)(void *ctx, uint32_t offset, void *data, uint32_t len);
    void *ctx;
    uint32_t region_bytes;
    uint32_t erase_block;
} tt_ckpt_io;
typedef struct {
    int8_t active;
    uint32_t sequence;
    uint32_t payload_len;
    uint32_t slot_bytes;
    ...;
} tt_ckpt_store;
typedef struct { uint8_t *mem; uint32_t size; } tt_ckpt_ram;
tt_ckpt_status tt_ckpt_open(tt_ckpt_store *s, const tt_ckpt_io *io);
uint32_t tt_ckpt_capacity(const tt_ckpt_store *s);
tt_ckpt_status tt_ckpt_save(tt_ckpt_store *s, const void *data, uint32_t len);
tt_ckpt_status tt_ckpt_load(tt_ckpt_store *s, void *buf, uint32_t cap, uint32_t *len, uint32_t *sequence);
const char *tt_ckpt_status_str(tt_ckpt_status st);
void tt_ckpt_ram_io(tt_ckpt_io *io, tt_ckpt_ram *ram, uint8_t *mem, uint32_t size, uint32_t erase_block);
extern "Python" int py_erase(void *, uint32_t, uint32_t);
extern "Python" int py_write(void *, uint32_t, const void *, uint32_t);
extern "Python" int py_read(void *, uint32_t, void *, uint32_t);
"""

CKPT_SOURCE = """
#include "tt_ckpt_slots.h"
"""

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-Wno-unused-function"]


def build(name: str, cdef: str, source: str, c_files: list[Path], out_dir: Path,
          extra_compile_args: list[str] = (), extra_link_args: list[str] = (), import_it: bool = True):
    """Compile a cffi API-mode module into out_dir and import it (or, with import_it=False,
    return the path of the compiled module, e.g. a sanitizer build for another process)."""
    ffi = FFI()
    ffi.cdef(cdef)
    ffi.set_source(
        name,
        source,
        sources=[str(p) for p in c_files],
        include_dirs=[str(RUNTIME_INC)],
        extra_compile_args=[*STRICT, *extra_compile_args],
        extra_link_args=list(extra_link_args),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    so_path = ffi.compile(tmpdir=str(out_dir), verbose=False)
    return load(name, Path(so_path)) if import_it else Path(so_path)


def load(name: str, so_path: Path):
    spec = importlib.util.spec_from_file_location(name, so_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def build_frame(out_dir: Path, **kw):
    return build("_tt_frame_test", FRAME_CDEF, FRAME_SOURCE, [RUNTIME_SRC / "tt_frame.c"], out_dir, **kw)


def build_ckpt(out_dir: Path, **kw):
    return build("_tt_ckpt_test", CKPT_CDEF, CKPT_SOURCE, [RUNTIME_SRC / "tt_ckpt_slots.c"], out_dir, **kw)
