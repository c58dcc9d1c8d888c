/* The static C program (glibc) the capsid tests run in every sandbox:
   threads, fork and wait, memory maps and randomness, then a line for the
   root's log. The host tests build it with gcc -static; make integration-vm
   builds it onto the VM lab's disk. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>
static void *run(void *arg) { return arg; }
int main(void) {
	pthread_t th; void *r = NULL; char buf[16];
	if (pthread_create(&th, NULL, run, (void *)7) || pthread_join(th, &r) || r != (void *)7) { puts("cprog thread failed"); return 1; }
	pid_t p = fork(); if (p == 0) _exit(5);
	int st = 0; if (p < 0 || waitpid(p, &st, 0) != p || WEXITSTATUS(st) != 5) { puts("cprog fork failed"); return 1; }
	void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || getrandom(buf, sizeof buf, 0) != sizeof buf) { puts("cprog mmap/getrandom failed"); return 1; }
	printf("cprog static glibc ok\n"); fflush(stdout);
	return 0;
}
