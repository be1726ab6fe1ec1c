/* rt.h - the freestanding runtime of the C test ROM: port I/O, output through the debug
 * console (port 0xE9), exit through isa-debug-exit (port 0xF4), and the few libc functions
 * gcc may call on its own (memcpy, memmove, memset, memcmp). */
#ifndef RT_H
#define RT_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int i32;
typedef long long i64;
typedef unsigned int size_t;

#define DEBUGCON_PORT 0xE9
#define DEBUG_EXIT_PORT 0xF4
#define EXIT_PASS 0x10
#define EXIT_FAIL 0x11

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }

void putc_dbg(char c);
void puts_dbg(const char *s);
void put_u32(u32 v);
void put_u64(u64 v);
void put_i64(i64 v);
void put_hex32(u32 v);
void __attribute__((noreturn)) exit_to_host(u8 code);

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

int main(void);

#endif
