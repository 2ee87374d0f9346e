build-dev/obj/tests/selftest.o: tests/selftest.c \
 build-dev/selftest_list.h
build-dev/selftest_list.h:
