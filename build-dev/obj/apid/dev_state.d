build-dev/obj/apid/dev_state.o: apid/dev_state.c apid/dev_state.h \
 common/clock.h common/test.h
apid/dev_state.h:
common/clock.h:
common/test.h:
