/*
 * crc: CRC-32C (Castagnoli) for on-disk records (spool, WAL): catches torn
 * and corrupt writes. Software table; a few hundred MB/s is plenty here.
 */
#ifndef SP_CRC_H
#define SP_CRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CRC-32C of n bytes, continuing from crc (start with 0). */
uint32_t crc_32c(uint32_t crc, const void *p, size_t n);

/* Selftest. */
void crc_test(bool verbose);

#endif
