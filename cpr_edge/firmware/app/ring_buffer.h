/* ring_buffer.h: single-producer single-consumer byte queue between the UART receive
 * interrupt (producer) and the main loop (consumer).
 *
 * Lock-free for one producer and one consumer on a single core: each index is written by
 * one side only, and the size is a power of two so the indices may wrap freely. Pure C. */
#ifndef RING_BUFFER_H
#define RING_BUFFER_H

#include <stdint.h>

#define RING_BUFFER_SIZE 1024u /* power of two; two maximum frames */

typedef struct {
    uint8_t data[RING_BUFFER_SIZE];
    volatile uint32_t head; /* written by the producer only */
    volatile uint32_t tail; /* written by the consumer only */
} ring_buffer;

static inline void ring_init(ring_buffer *r) { r->head = r->tail = 0; }

static inline uint32_t ring_count(const ring_buffer *r) { return r->head - r->tail; }

/* Producer side (interrupt context). Returns 0, dropping the byte, when full. */
static inline int ring_push(ring_buffer *r, uint8_t byte)
{
    uint32_t head = r->head;
    if (head - r->tail >= RING_BUFFER_SIZE)
        return 0;
    r->data[head & (RING_BUFFER_SIZE - 1u)] = byte;
    __asm volatile("" ::: "memory"); /* the byte is stored before the index is published */
    r->head = head + 1u;
    return 1;
}

/* Consumer side (main loop). Returns 0 when empty. */
static inline int ring_pop(ring_buffer *r, uint8_t *byte)
{
    uint32_t tail = r->tail;
    if (r->head == tail)
        return 0;
    *byte = r->data[tail & (RING_BUFFER_SIZE - 1u)];
    __asm volatile("" ::: "memory");
    r->tail = tail + 1u;
    return 1;
}

#endif /* RING_BUFFER_H */
