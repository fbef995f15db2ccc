/* Kernel console output on COM1 (a 16550; THR writes, no polling: the host drains at once). */
#include "kernel.h"

void console_write(const char *s, u64 n) {
	for (u64 i = 0; i < n; i++) outb(PORT_COM1, (u8)s[i]);
}

void console_puts(const char *s) {
	while (*s) outb(PORT_COM1, (u8)*s++);
}

void console_hex(u64 v) {
	char buf[19];
	int i = 18;
	buf[i--] = 0;
	do {
		buf[i--] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	buf[i--] = 'x';
	buf[i] = '0';
	console_puts(&buf[i]);
}
