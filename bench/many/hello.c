#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    const char *who = argc > 1 ? argv[1] : "nobody";
    unsigned sum = 0;
    for (const char *p = who; *p; p++) sum += (unsigned char)*p;
    if (sum % 2) printf("odd %s %u\n", who, sum);
    else printf("even %s %u\n", who, sum);
    return 0;
}
