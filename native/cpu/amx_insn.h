// amx_insn.h — the Intel AMX instructions gemm_amx.cc uses, as their machine-code bytes.
//
// Why bytes: the release build root (Debian bullseye: GCC 10, binutils 2.35) knows neither the
// -mamx-* intrinsics (GCC 11) nor the AMX mnemonics (binutils 2.36), and the release binary must
// still carry the AMX kernels. Each macro emits the exact encoding of one instruction with its
// memory operands in fixed registers, so any assembler takes it; dispatch.cc still runs these
// only where the CPU reports AMX and Linux granted the tile data (SIMBA_NO_AMX=1 turns them off).
// test/amx_encoding.test.ts compiles every form (all tile numbers) with the host's g++ and reads
// them back with its objdump (binutils >= 2.36 knows AMX), comparing each with its mnemonic.
//
// Encodings (Intel SDM vol. 2, "AMX"): all VEX.128 in map 0F38, W0, as a 3-byte VEX prefix
//   C4  E2  [W=0 | vvvv (inverted) | L=0 | pp]  opcode  ModRM  [SIB]
// E2 = inverted R, X, B set (no extended registers: the memory operands use rax and rdx) and
// map 0F38. pp: 0 = none, 1 = 66, 2 = F3, 3 = F2. With no register in vvvv it is 1111 (0x78 | pp).
//   ldtilecfg  (%rax)              NP 49 /0      C4 E2 78 49 00
//   tilerelease                    NP 49 C0      C4 E2 78 49 C0
//   tilezero   %tmmT               F2 49 11:T:000           C4 E2 7B 49 C0+8T
//   tileloadd  (%rax,%rdx,1),%tmmT F2 4B 00:T:100, SIB 00:010:000   C4 E2 7B 4B 04+8T 10
//   tilestored %tmmT,(%rax,%rdx,1) F3 4B 00:T:100, SIB 00:010:000   C4 E2 7A 4B 04+8T 10
//   tdpbf16ps  %tmmB,%tmmA,%tmmC   F3 5C 11:C:A, vvvv = ~B  C4 E2 (~B&15)<<3|2 5C C0+8C+A
//   tdpbusd    %tmmB,%tmmA,%tmmC   66 5E 11:C:A, vvvv = ~B  C4 E2 (~B&15)<<3|1 5E C0+8C+A
// (C += A x B: C in ModRM.reg, A in ModRM.rm, B in VEX.vvvv.) The tile numbers are literal
// digits 0-7, pasted into the assembler's expressions. Loads and stores clobber memory, so the
// compiler keeps the scratch-tile copies before them.
#pragma once

// ldtilecfg (cfg): cfg points to a 64-byte tile configuration.
#define AMX_LOADCONFIG(cfg) __asm__ volatile(".byte 0xc4,0xe2,0x78,0x49,0x00" ::"a"((const void*)(cfg)) : "memory")
#define AMX_RELEASE() __asm__ volatile(".byte 0xc4,0xe2,0x78,0x49,0xc0" ::)
#define AMX_ZERO(T) __asm__ volatile(".byte 0xc4,0xe2,0x7b,0x49,0xc0+8*" #T ::)
// tmmT = 16 rows of 64 bytes from base, stride bytes apart; and back.
#define AMX_LOAD(T, base, stride) \
  __asm__ volatile(".byte 0xc4,0xe2,0x7b,0x4b,0x04+8*" #T ",0x10" ::"a"(base), "d"((long)(stride)) : "memory")
#define AMX_STORE(T, base, stride) \
  __asm__ volatile(".byte 0xc4,0xe2,0x7a,0x4b,0x04+8*" #T ",0x10" ::"a"(base), "d"((long)(stride)) : "memory")
// C += A B: tile C (f32) += A (bf16 pairs) x B (bf16 pairs); tile C (int32) += A (u8) x B (s8).
#define AMX_DPBF16PS(C, A, B) __asm__ volatile(".byte 0xc4,0xe2,((~" #B "&15)<<3)|2,0x5c,0xc0+8*" #C "+" #A ::)
#define AMX_DPBUSD(C, A, B) __asm__ volatile(".byte 0xc4,0xe2,((~" #B "&15)<<3)|1,0x5e,0xc0+8*" #C "+" #A ::)
