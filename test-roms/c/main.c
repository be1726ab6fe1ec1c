/* main.c - a freestanding C program as a test ROM: several algorithms a compiler turns into
 * the general-purpose integer instructions emu must run (loops, calls, jump tables, 64-bit
 * arithmetic through libgcc, string operations). Each result is printed and, where a
 * well-known value exists, checked against it; every result also feeds a final FNV-1a
 * checksum. main() returns the number of failed checks. */
#include "rt.h"

static u32 checksum = 0x811C9DC5u; /* FNV-1a offset basis */
static int failures;

static void fold(u32 v)
{
    for (int i = 0; i < 4; i++) {
        checksum ^= (v >> (8 * i)) & 0xFF;
        checksum *= 0x01000193u; /* FNV prime */
    }
}

static void report_u32(const char *name, u32 v)
{
    puts_dbg(name);
    puts_dbg(" = ");
    put_u32(v);
    putc_dbg('\n');
    fold(v);
}

static void report_hex(const char *name, u32 v)
{
    puts_dbg(name);
    puts_dbg(" = ");
    put_hex32(v);
    putc_dbg('\n');
    fold(v);
}

static void report_u64(const char *name, u64 v)
{
    puts_dbg(name);
    puts_dbg(" = ");
    put_u64(v);
    putc_dbg('\n');
    fold((u32)v);
    fold((u32)(v >> 32));
}

static void expect(const char *what, int ok)
{
    if (!ok) {
        puts_dbg("FAIL ");
        puts_dbg(what);
        putc_dbg('\n');
        failures++;
    }
}

/* ---- quicksort of a pseudo-random array ------------------------------------------------ */
#define SORT_N 3000
static u32 sort_buf[SORT_N];
static u32 lcg_state = 12345;

static u32 lcg(void)
{
    lcg_state = lcg_state * 1103515245u + 12345u;
    return lcg_state >> 1;
}

static void quicksort(u32 *a, int lo, int hi)
{
    while (lo < hi) {
        u32 pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                u32 t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (j - lo < hi - i) {
            quicksort(a, lo, j);
            lo = i;
        } else {
            quicksort(a, i, hi);
            hi = j;
        }
    }
}

static void test_sort(void)
{
    u32 sum_before = 0, sum_after = 0, mix = 0;
    for (int i = 0; i < SORT_N; i++) {
        sort_buf[i] = lcg() % 100000;
        sum_before += sort_buf[i];
    }
    quicksort(sort_buf, 0, SORT_N - 1);
    int sorted = 1;
    for (int i = 0; i < SORT_N; i++) {
        sum_after += sort_buf[i];
        mix = mix * 31 + sort_buf[i];
        if (i && sort_buf[i - 1] > sort_buf[i])
            sorted = 0;
    }
    expect("quicksort order", sorted);
    expect("quicksort keeps elements", sum_before == sum_after);
    report_u32("sort min", sort_buf[0]);
    report_u32("sort max", sort_buf[SORT_N - 1]);
    report_hex("sort mix", mix);
}

/* ---- sieve of Eratosthenes -------------------------------------------------------------- */
#define SIEVE_N 100000
static u8 composite[SIEVE_N];

static void test_sieve(void)
{
    u32 count = 0, sum = 0;
    for (u32 i = 2; i < SIEVE_N; i++) {
        if (composite[i])
            continue;
        count++;
        sum += i;
        for (u32 j = i * i; j < SIEVE_N; j += i)
            composite[j] = 1;
    }
    report_u32("primes below 100000", count);
    report_u32("sum of those primes", sum);
    expect("prime count", count == 9592); /* pi(10^5) */
}

/* ---- CRC-32 (IEEE 802.3, reflected, table driven) ---------------------------------------- */
static u32 crc_table[256];

static u32 crc32(const u8 *p, size_t n)
{
    if (!crc_table[1]) {
        for (u32 i = 0; i < 256; i++) {
            u32 c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
    }
    u32 c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static const char fox[] = "The quick brown fox jumps over the lazy dog";

static void test_crc(void)
{
    u32 a = crc32((const u8 *)"123456789", 9);
    u32 b = crc32((const u8 *)fox, strlen(fox));
    report_hex("crc32 check", a);
    report_hex("crc32 fox", b);
    expect("crc32 check value", a == 0xCBF43926u);
    expect("crc32 fox value", b == 0x414FA339u);
}

/* ---- SHA-256 (FIPS 180-4) ---------------------------------------------------------------- */
static const u32 sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static u32 ror32(u32 x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(u32 h[8], const u8 *blk)
{
    u32 w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (u32)blk[4 * i] << 24 | (u32)blk[4 * i + 1] << 16 | (u32)blk[4 * i + 2] << 8 |
               blk[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        u32 s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        u32 s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    u32 a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        u32 t1 = hh + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
                 sha_k[i] + w[i];
        u32 t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

static void sha256(const u8 *msg, size_t len, u32 out[8])
{
    static const u32 init[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    u8 blk[64];
    memcpy(out, init, sizeof init);
    size_t off = 0;
    for (; len - off >= 64; off += 64)
        sha256_block(out, msg + off);
    size_t rest = len - off;
    memset(blk, 0, 64);
    memcpy(blk, msg + off, rest);
    blk[rest] = 0x80;
    if (rest >= 56) {
        sha256_block(out, blk);
        memset(blk, 0, 64);
    }
    u64 bits = (u64)len * 8;
    for (int i = 0; i < 8; i++)
        blk[63 - i] = (u8)(bits >> (8 * i));
    sha256_block(out, blk);
}

static void test_sha256(void)
{
    u32 h[8];
    sha256((const u8 *)"abc", 3, h);
    puts_dbg("sha256(abc) = ");
    for (int i = 0; i < 8; i++) {
        put_hex32(h[i]);
        fold(h[i]);
    }
    putc_dbg('\n');
    expect("sha256 abc", h[0] == 0xba7816bf && h[7] == 0xf20015ad);
    sha256((const u8 *)fox, strlen(fox), h);
    report_hex("sha256(fox)[0]", h[0]);
    expect("sha256 fox", h[0] == 0xd7a8fbb3 && h[7] == 0x37c9e592);
}

/* ---- 64-bit arithmetic ----------------------------------------------------------------- */
static void test_u64(void)
{
    u64 f = 1;
    for (u32 i = 2; i <= 20; i++)
        f *= i;
    report_u64("20!", f);
    expect("20!", f == 2432902008176640000ull);

    u64 a = 0, b = 1;
    for (int i = 0; i < 90; i++) {
        u64 t = a + b;
        a = b;
        b = t;
    }
    report_u64("fib(90)", a);
    expect("fib(90)", a == 2880067194370816120ull);

    volatile i64 n = -1000000000000ll, d = 7;
    i64 q = n / d, r = n % d;
    puts_dbg("-10^12 / 7 = ");
    put_i64(q);
    puts_dbg(" r ");
    put_i64(r);
    putc_dbg('\n');
    fold((u32)q);
    fold((u32)r);
    expect("i64 division", q == -142857142857ll && r == -1);

    volatile u64 big = 0xFFFFFFFFFFFFFFFFull;
    u64 s = big >> 13 ^ big << 7;
    report_u64("u64 shifts", s);
    expect("u64 shifts", s == (0x0007FFFFFFFFFFFFull ^ 0xFFFFFFFFFFFFFF80ull));
}

/* ---- strings ---------------------------------------------------------------------------- */
static void reverse(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n / 2; i++) {
        char t = s[i];
        s[i] = s[n - 1 - i];
        s[n - 1 - i] = t;
    }
}

static void test_strings(void)
{
    char buf[32];
    memcpy(buf, "emulator", 9);
    reverse(buf);
    puts_dbg("reversed = ");
    puts_dbg(buf);
    putc_dbg('\n');
    expect("reverse", strcmp(buf, "rotalume") == 0);
    memcpy(buf, "abcdefghij", 11);
    memmove(buf + 2, buf, 8); /* overlapping, forwards */
    puts_dbg("memmove = ");
    puts_dbg(buf);
    putc_dbg('\n');
    expect("memmove", memcmp(buf, "ababcdefgh", 11) == 0);
    expect("strcmp order", strcmp("apple", "apricot") < 0 && strcmp("b", "a") > 0);
    u32 words = 0;
    for (const char *p = fox; *p; p++)
        if (*p != ' ' && (p == fox || p[-1] == ' '))
            words++;
    report_u32("words in fox", words);
    expect("word count", words == 9);
}

/* ---- a bytecode interpreter (a switch becomes a jump table) ----------------------------- */
enum { OP_PUSH, OP_ADD, OP_SUB, OP_MUL, OP_DUP, OP_SWAP, OP_JNZ, OP_DEC, OP_OVER, OP_DROP, OP_HALT };

static i32 interpret(const i32 *code)
{
    i32 stack[16];
    int sp = 0, pc = 0;
    for (;;) {
        switch (code[pc++]) {
        case OP_PUSH: stack[sp++] = code[pc++]; break;
        case OP_ADD: sp--; stack[sp - 1] += stack[sp]; break;
        case OP_SUB: sp--; stack[sp - 1] -= stack[sp]; break;
        case OP_MUL: sp--; stack[sp - 1] *= stack[sp]; break;
        case OP_DUP: stack[sp] = stack[sp - 1]; sp++; break;
        case OP_SWAP: { i32 t = stack[sp - 1]; stack[sp - 1] = stack[sp - 2]; stack[sp - 2] = t; } break;
        case OP_JNZ: { i32 target = code[pc++]; if (stack[--sp]) pc = target; } break;
        case OP_DEC: stack[sp - 1]--; break;
        case OP_OVER: stack[sp] = stack[sp - 2]; sp++; break;
        case OP_DROP: sp--; break;
        case OP_HALT: return stack[sp - 1];
        default: return -1;
        }
    }
}

static void test_interpreter(void)
{
    /* acc = 0; n = 100; do { acc += n; n--; } while (n); -> 5050 */
    static const i32 prog[] = {
        OP_PUSH, 0, OP_PUSH, 100,                 /* acc n */
        OP_DUP, OP_SWAP, OP_DROP,                 /* 4: acc n (exercise dup/swap/drop) */
        OP_SWAP, OP_OVER, OP_ADD, OP_SWAP,        /* acc+n n */
        OP_DEC, OP_DUP, OP_JNZ, 4,                /* loop while n != 0 */
        OP_DROP, OP_HALT,
    };
    i32 r = interpret(prog);
    report_u32("interpreter sum", (u32)r);
    expect("interpreter", r == 5050);
}

/* ---- recursion and backtracking ------------------------------------------------------- */
static u32 hanoi(int n, int from, int to, int via)
{
    if (n == 0)
        return 0;
    return hanoi(n - 1, from, via, to) + 1 + hanoi(n - 1, via, to, from);
}

static int queens(int row, int n, u32 cols, u32 d1, u32 d2)
{
    if (row == n)
        return 1;
    int count = 0;
    for (u32 avail = ~(cols | d1 | d2) & ((1u << n) - 1); avail; avail &= avail - 1) {
        u32 bit = avail & -avail;
        count += queens(row + 1, n, cols | bit, (d1 | bit) << 1, (d2 | bit) >> 1);
    }
    return count;
}

static u32 collatz_len(u32 n)
{
    u32 len = 1;
    while (n != 1) {
        n = (n & 1) ? 3 * n + 1 : n / 2;
        len++;
    }
    return len;
}

static int cmp_desc(u32 a, u32 b) { return a > b; }
static int cmp_asc(u32 a, u32 b) { return a < b; }

static void test_recursion(void)
{
    u32 moves = hanoi(16, 1, 3, 2);
    report_u32("hanoi(16) moves", moves);
    expect("hanoi", moves == 65535);
    int q = queens(0, 8, 0, 0, 0);
    report_u32("8 queens solutions", (u32)q);
    expect("8 queens", q == 92);
    u32 best = 0, best_n = 0;
    for (u32 n = 1; n < 10000; n++) {
        u32 l = collatz_len(n);
        if (l > best)
            best = l, best_n = n;
    }
    report_u32("longest collatz start below 10000", best_n);
    report_u32("its length", best);
    expect("collatz", best_n == 6171 && best == 262);
    int (*cmps[2])(u32, u32) = {cmp_desc, cmp_asc};
    u32 picks = 0;
    for (int i = 0; i < 16; i++)
        picks = picks << 1 | (u32)cmps[i & 1]((u32)i * 7 % 5, 2);
    report_hex("function pointer picks", picks);
}

int main(void)
{
    puts_dbg("C test ROM\n");
    test_sort();
    test_sieve();
    test_crc();
    test_sha256();
    test_u64();
    test_strings();
    test_interpreter();
    test_recursion();
    puts_dbg("checksum ");
    put_hex32(checksum);
    putc_dbg('\n');
    puts_dbg(failures ? "FAIL\n" : "PASS\n");
    return failures;
}
