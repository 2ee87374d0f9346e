/*
 * crc: CRC-32C (see crc.h).
 */
#include "common/crc.h"
#include "common/test.h"

#include <string.h>

static uint32_t s_table[256];

static void
s_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0x82f63b78u ^ (c >> 1) : c >> 1;
        s_table[i] = c;
    }
}

#if defined(__x86_64__)
/* SSE 4.2 has a CRC-32C instruction; used when the CPU has it. */
__attribute__((target("sse4.2"))) static uint32_t
s_hw(uint32_t crc, const unsigned char *b, size_t n)
{
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        c = __builtin_ia32_crc32di(c, w);
        b += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *b++);
    return ~c32;
}
#endif

uint32_t
crc_32c(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;

#if defined(__x86_64__)
    static int hw = -1;
    if (hw == -1)
        hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    if (hw)
        return s_hw(crc, b, n);
#endif
    if (s_table[1] == 0)
        s_init(); /* idempotent; racing threads write the same values */
    crc = ~crc;
    while (n--)
        crc = s_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

void
crc_test(bool verbose)
{
    /* The check value of CRC-32C. */
    assert(crc_32c(0, "123456789", 9) == 0xe3069283u);
    assert(crc_32c(crc_32c(0, "1234", 4), "56789", 5) == 0xe3069283u);
    assert(crc_32c(0, "", 0) == 0);
    /* Hardware and table agree on every length and alignment. */
    unsigned char buf[100];
    for (int i = 0; i < 100; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= 100; len += 7) {
            uint32_t sw = ~0u;
            if (s_table[1] == 0)
                s_init();
            for (size_t k = 0; k < len; k++)
                sw = s_table[(sw ^ buf[off + k]) & 0xff] ^ (sw >> 8);
            assert(crc_32c(0, buf + off, len) == ~sw);
        }
    (void)verbose;
    TEST_OK("crc");
}
