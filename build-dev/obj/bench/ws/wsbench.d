build-dev/obj/bench/ws/wsbench.o: bench/ws/wsbench.c
