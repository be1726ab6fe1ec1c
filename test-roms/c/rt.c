/* rt.c - entry point and runtime of the C test ROM (see rt.h). */
#include "rt.h"

extern u8 __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];

/* Entered from reset.asm in 32-bit flat protected mode with a stack; must come first in the
 * image (section .text.start, placed first by link.ld). Loops are written byte by byte with
 * volatile pointers so gcc cannot turn them into calls to memcpy/memset before .data exists. */
void __attribute__((section(".text.start"), noreturn, used)) _start(void)
{
    volatile u8 *dst = __data_start;
    const volatile u8 *src = __data_load;
    while (dst < __data_end)
        *dst++ = *src++;
    for (volatile u8 *p = __bss_start; p < __bss_end; p++)
        *p = 0;
    int failures = main();
    exit_to_host(failures == 0 ? EXIT_PASS : EXIT_FAIL);
}

void putc_dbg(char c) { outb(DEBUGCON_PORT, (u8)c); }

void puts_dbg(const char *s)
{
    while (*s)
        putc_dbg(*s++);
}

void put_u64(u64 v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10); /* __umoddi3 / __udivdi3 from libgcc */
        v /= 10;
    } while (v);
    puts_dbg(&buf[i]);
}

void put_u32(u32 v) { put_u64(v); }

void put_i64(i64 v)
{
    if (v < 0) {
        putc_dbg('-');
        put_u64((u64)0 - (u64)v);
    } else {
        put_u64((u64)v);
    }
}

void put_hex32(u32 v)
{
    static const char digits[] = "0123456789abcdef";
    for (int s = 28; s >= 0; s -= 4)
        putc_dbg(digits[(v >> s) & 15]);
}

void exit_to_host(u8 code)
{
    outb(DEBUG_EXIT_PORT, code);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void *memcpy(void *dst, const void *src, size_t n)
{
    u8 *d = dst;
    const u8 *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    u8 *d = dst;
    const u8 *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    u8 *d = dst;
    while (n--)
        *d++ = (u8)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (u8)*a - (u8)*b;
}
