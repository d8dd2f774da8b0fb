//go:build amd64 && !purego

#include "textflag.h"

// AES-128 with AES-NI for the BSP. The schedules live in the caller's bsp
// state (so that zero() can wipe them), which is not 16-byte aligned: round
// keys are therefore loaded with MOVOU, never used as aligned SSE memory
// operands. X registers that held key material are cleared before return.

// One step of the AES-128 key expansion (the Intel white paper's form, as in
// crypto/aes): X0 is the previous round key, X4 must start at zero and is
// carried from step to step.
#define EXPAND(rcon, off) \
	AESKEYGENASSIST $rcon, X0, X1 \
	PSHUFD $0xff, X1, X1 \
	SHUFPS $0x10, X0, X4 \
	PXOR X4, X0 \
	SHUFPS $0x8c, X0, X4 \
	PXOR X4, X0 \
	PXOR X1, X0 \
	MOVOU X0, off(BX)

// func expandKeyAsm(key *[16]byte, enc *[176]byte)
TEXT ·expandKeyAsm(SB), NOSPLIT, $0-16
	MOVQ key+0(FP), AX
	MOVQ enc+8(FP), BX
	MOVOU (AX), X0
	MOVOU X0, (BX)
	PXOR X4, X4
	EXPAND(0x01, 16)
	EXPAND(0x02, 32)
	EXPAND(0x04, 48)
	EXPAND(0x08, 64)
	EXPAND(0x10, 80)
	EXPAND(0x20, 96)
	EXPAND(0x40, 112)
	EXPAND(0x80, 128)
	EXPAND(0x1b, 144)
	EXPAND(0x36, 160)
	PXOR X0, X0
	PXOR X1, X1
	PXOR X4, X4
	RET

// func invertKeyAsm(enc, dec *[176]byte)
// dec is the Equivalent Inverse Cipher schedule for AESDEC: enc[10],
// InvMixColumns(enc[9..1]), enc[0].
TEXT ·invertKeyAsm(SB), NOSPLIT, $0-16
	MOVQ enc+0(FP), AX
	MOVQ dec+8(FP), BX
	MOVOU 160(AX), X0
	MOVOU X0, (BX)
	MOVOU 144(AX), X0
	AESIMC X0, X1
	MOVOU X1, 16(BX)
	MOVOU 128(AX), X0
	AESIMC X0, X1
	MOVOU X1, 32(BX)
	MOVOU 112(AX), X0
	AESIMC X0, X1
	MOVOU X1, 48(BX)
	MOVOU 96(AX), X0
	AESIMC X0, X1
	MOVOU X1, 64(BX)
	MOVOU 80(AX), X0
	AESIMC X0, X1
	MOVOU X1, 80(BX)
	MOVOU 64(AX), X0
	AESIMC X0, X1
	MOVOU X1, 96(BX)
	MOVOU 48(AX), X0
	AESIMC X0, X1
	MOVOU X1, 112(BX)
	MOVOU 32(AX), X0
	AESIMC X0, X1
	MOVOU X1, 128(BX)
	MOVOU 16(AX), X0
	AESIMC X0, X1
	MOVOU X1, 144(BX)
	MOVOU (AX), X0
	MOVOU X0, 160(BX)
	PXOR X0, X0
	PXOR X1, X1
	RET

// Load the 11 round keys at R into X5..X15.
#define LOADKEYS(R) \
	MOVOU 0(R), X5 \
	MOVOU 16(R), X6 \
	MOVOU 32(R), X7 \
	MOVOU 48(R), X8 \
	MOVOU 64(R), X9 \
	MOVOU 80(R), X10 \
	MOVOU 96(R), X11 \
	MOVOU 112(R), X12 \
	MOVOU 128(R), X13 \
	MOVOU 144(R), X14 \
	MOVOU 160(R), X15

// Rounds 1..10 on X with the keys in X6..X15 (round 0, the whitening XOR
// with X5, is done by the caller so that it can be merged with the chaining
// XOR).
#define ENCROUNDS(X) \
	AESENC X6, X \
	AESENC X7, X \
	AESENC X8, X \
	AESENC X9, X \
	AESENC X10, X \
	AESENC X11, X \
	AESENC X12, X \
	AESENC X13, X \
	AESENC X14, X \
	AESENCLAST X15, X

#define DECROUNDS(X) \
	AESDEC X6, X \
	AESDEC X7, X \
	AESDEC X8, X \
	AESDEC X9, X \
	AESDEC X10, X \
	AESDEC X11, X \
	AESDEC X12, X \
	AESDEC X13, X \
	AESDEC X14, X \
	AESDECLAST X15, X

#define CLEARKEYS \
	PXOR X5, X5 \
	PXOR X6, X6 \
	PXOR X7, X7 \
	PXOR X8, X8 \
	PXOR X9, X9 \
	PXOR X10, X10 \
	PXOR X11, X11 \
	PXOR X12, X12 \
	PXOR X13, X13 \
	PXOR X14, X14 \
	PXOR X15, X15

// func encryptBlockAsm(rk *[176]byte, dst, src *[16]byte)
TEXT ·encryptBlockAsm(SB), NOSPLIT, $0-24
	MOVQ rk+0(FP), AX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	LOADKEYS(AX)
	MOVOU (SI), X0
	PXOR X5, X0
	ENCROUNDS(X0)
	MOVOU X0, (DI)
	PXOR X0, X0
	CLEARKEYS
	RET

// func cbcMACAsm(rk *[176]byte, x *[16]byte, src []byte)
// x = E(x ^ m) for each 16-byte block m of src; len(src) is a positive
// multiple of 16.
TEXT ·cbcMACAsm(SB), NOSPLIT, $0-40
	MOVQ rk+0(FP), AX
	MOVQ x+8(FP), DI
	MOVQ src_base+16(FP), SI
	MOVQ src_len+24(FP), CX
	SHRQ $4, CX
	LOADKEYS(AX)
	MOVOU (DI), X0

macloop:
	MOVOU (SI), X1
	PXOR X5, X1
	PXOR X1, X0
	ENCROUNDS(X0)
	ADDQ $16, SI
	DECQ CX
	JNZ macloop

	MOVOU X0, (DI)
	PXOR X0, X0
	PXOR X1, X1
	CLEARKEYS
	RET

// func cbcDecryptAsm(dec *[176]byte, iv *[16]byte, buf []byte)
// AES-CBC decryption of buf in place; len(buf) is a positive multiple of 16.
// Blocks do not depend on each other's decryption, so the out-of-order core
// overlaps consecutive iterations by itself.
TEXT ·cbcDecryptAsm(SB), NOSPLIT, $0-40
	MOVQ dec+0(FP), AX
	MOVQ iv+8(FP), DI
	MOVQ buf_base+16(FP), SI
	MOVQ buf_len+24(FP), CX
	SHRQ $4, CX
	LOADKEYS(AX)
	MOVOU (DI), X1

decloop:
	MOVOU (SI), X2
	MOVOU X2, X0
	PXOR X5, X0
	DECROUNDS(X0)
	PXOR X1, X0
	MOVOU X0, (SI)
	MOVOU X2, X1
	ADDQ $16, SI
	DECQ CX
	JNZ decloop

	PXOR X0, X0
	PXOR X1, X1
	PXOR X2, X2
	CLEARKEYS
	RET

// One interleaved round: S-ENC round key in a register on the CBC state X0,
// S-MAC round key from memory (via X4) on the CMAC state X1.
#define ROUND2(kreg, off) \
	MOVOU off(BX), X4 \
	AESENC kreg, X0 \
	AESENC X4, X1

// Rounds 1..10 of both chains, interleaved so that the two dependency chains
// overlap in the AES unit.
#define ENCMAC2 \
	ROUND2(X6, 16) \
	ROUND2(X7, 32) \
	ROUND2(X8, 48) \
	ROUND2(X9, 64) \
	ROUND2(X10, 80) \
	ROUND2(X11, 96) \
	ROUND2(X12, 112) \
	ROUND2(X13, 128) \
	ROUND2(X14, 144) \
	MOVOU 160(BX), X4 \
	AESENCLAST X15, X0 \
	AESENCLAST X4, X1

// The CMAC alone (S-MAC keys from memory) on X1, round 0 included.
#define MACONLY \
	MOVOU 0(BX), X4 \
	PXOR X4, X1 \
	MOVOU 16(BX), X4 \
	AESENC X4, X1 \
	MOVOU 32(BX), X4 \
	AESENC X4, X1 \
	MOVOU 48(BX), X4 \
	AESENC X4, X1 \
	MOVOU 64(BX), X4 \
	AESENC X4, X1 \
	MOVOU 80(BX), X4 \
	AESENC X4, X1 \
	MOVOU 96(BX), X4 \
	AESENC X4, X1 \
	MOVOU 112(BX), X4 \
	AESENC X4, X1 \
	MOVOU 128(BX), X4 \
	AESENC X4, X1 \
	MOVOU 144(BX), X4 \
	AESENC X4, X1 \
	MOVOU 160(BX), X4 \
	AESENCLAST X4, X1

// X1 ^= CMAC input block built from the previous two ciphertext blocks:
// the last h bytes of X2 (C[j-1], or the right-aligned header T || L) then
// the first 16-h bytes of X0 (C[j]). The masks at DX select them with
// PSHUFB (0x80 entries give zero bytes), so the halves combine by XOR.
// Leaves X2 = X0.
#define MACINPUT \
	MOVOU (DX), X4 \
	PSHUFB X4, X2 \
	PXOR X2, X1 \
	MOVOU 16(DX), X4 \
	MOVOU X0, X3 \
	PSHUFB X4, X3 \
	PXOR X3, X1 \
	MOVOU X0, X2

// func sealSegmentAsm(encRK, macRK *[176]byte, mcv, ctr, hdr *[16]byte, masks *[2][16]byte, fin *[16]byte, buf []byte)
//
// One encrypted BSP segment: buf (the padded plaintext, len a positive
// multiple of 16) is AES-CBC encrypted in place under encRK with
// ICV = E(ctr), and mcv is replaced by CMAC(macRK, mcv || T || L || C), where
// hdr holds T || L right-aligned (h = 2..4 bytes), masks are the PSHUFB
// masks for that h, and fin is the final block's padding (0x80 at offset h)
// XOR the CMAC subkey K2. The CMAC chain trails the CBC chain by one block
// and their rounds are interleaved.
TEXT ·sealSegmentAsm(SB), NOSPLIT, $0-80
	MOVQ encRK+0(FP), AX
	MOVQ macRK+8(FP), BX
	MOVQ mcv+16(FP), R8
	MOVQ ctr+24(FP), R9
	MOVQ hdr+32(FP), R10
	MOVQ masks+40(FP), DX
	MOVQ fin+48(FP), R11
	MOVQ buf_base+56(FP), SI
	MOVQ buf_len+64(FP), CX
	SHRQ $4, CX
	LOADKEYS(AX)

	// ICV = E(ctr) alongside the first CMAC block, E(MCV).
	MOVOU (R9), X0
	PXOR X5, X0
	MOVOU (R8), X1
	MOVOU 0(BX), X4
	PXOR X4, X1
	ENCMAC2

	// C[0]: the CMAC has nothing to do until it exists.
	MOVOU (SI), X3
	PXOR X3, X0
	PXOR X5, X0
	ENCROUNDS(X0)
	MOVOU X0, (SI)
	ADDQ $16, SI
	MOVOU (R10), X2
	DECQ CX
	JZ tail

loop:
	// CMAC block j = i-1 from C[i-2], C[i-1]; then C[i] = E(C[i-1] ^ P[i]).
	MACINPUT
	MOVOU (SI), X3
	PXOR X3, X0
	PXOR X5, X0
	MOVOU 0(BX), X4
	PXOR X4, X1
	ENCMAC2
	MOVOU X0, (SI)
	ADDQ $16, SI
	DECQ CX
	JNZ loop

tail:
	// Last full CMAC block, then the padded final block XOR K2.
	MACINPUT
	MACONLY
	MOVOU (DX), X4
	PSHUFB X4, X0
	MOVOU (R11), X3
	PXOR X3, X0
	PXOR X0, X1
	MACONLY
	MOVOU X1, (R8)

	PXOR X0, X0
	PXOR X1, X1
	PXOR X2, X2
	PXOR X3, X3
	PXOR X4, X4
	CLEARKEYS
	RET
