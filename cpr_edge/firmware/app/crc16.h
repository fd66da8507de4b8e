/* crc16.h: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR).
 * Pure C, no hardware access: also built for the host (fuzzing, tests). */
#ifndef CRC16_H
#define CRC16_H

#include <stddef.h>
#include <stdint.h>

#define CRC16_INIT 0xFFFFu

/* Continues a CRC over `n` more bytes; start with CRC16_INIT. */
uint16_t crc16_update(uint16_t crc, const uint8_t *data, size_t n);

#endif /* CRC16_H */
