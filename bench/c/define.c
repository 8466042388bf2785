// Raw C-API baseline for bench/libvirt-define.bench.ts: defines each XML file given on the command
// line with virNWFilterDefineXMLFlags(VALIDATE) over one connection and prints one duration (ms)
// per call on stdout. A first argument --no-validate passes flags 0 instead.
#include <libvirt/libvirt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc(n + 1);
  if (fread(buf, 1, n, f) != (size_t)n) { fclose(f); free(buf); return NULL; }
  buf[n] = 0;
  fclose(f);
  return buf;
}

int main(int argc, char **argv) {
  virConnectPtr conn = virConnectOpen("qemu:///system");
  if (!conn) return 2;
  int first = 1;
  unsigned int flags = VIR_NWFILTER_DEFINE_VALIDATE;
  if (argc > 1 && strcmp(argv[1], "--no-validate") == 0) {
    flags = 0;
    first = 2;
  }
  for (int i = first; i < argc; i++) {
    char *xml = slurp(argv[i]);
    if (!xml) return 3;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    virNWFilterPtr f = virNWFilterDefineXMLFlags(conn, xml, flags);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (!f) return 4;
    virNWFilterFree(f);
    free(xml);
    printf("%.4f\n", (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
  }
  virConnectClose(conn);
  return 0;
}
