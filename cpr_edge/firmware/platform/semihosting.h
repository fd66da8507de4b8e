/* semihosting.h: Arm semihosting for on-target tests in QEMU
 * (-semihosting-config enable=on,target=native). Only used by test images: on a real board
 * without a debugger attached the BKPT would fault. */
#ifndef SEMIHOSTING_H
#define SEMIHOSTING_H

void semihost_write(const char *text);          /* SYS_WRITE0 to the host's stdout */
void semihost_exit(int status) __attribute__((noreturn)); /* SYS_EXIT_EXTENDED: exit status */

#endif /* SEMIHOSTING_H */
