# Build options shared by every target, carried on an interface target
# instead of global flags: link eds_options to get them.
add_library(eds_options INTERFACE)
target_compile_options(eds_options INTERFACE -Wall -Wextra -Wshadow -Wstrict-prototypes
                                             -Wmissing-prototypes -Wno-unused-parameter)
if(EDS_WERROR)
    target_compile_options(eds_options INTERFACE -Werror)
endif()
# 64-bit file offsets everywhere: 32-bit targets (the myRIO) otherwise get EOVERFLOW
# from readdir()/stat() on large-inode file systems.
target_compile_definitions(eds_options INTERFACE _GNU_SOURCE _FILE_OFFSET_BITS=64)
if(EDS_SANITIZE)
    target_compile_options(eds_options INTERFACE -fsanitize=address,undefined
                                                 -fno-sanitize-recover=undefined
                                                 -fno-omit-frame-pointer)
    target_link_options(eds_options INTERFACE -fsanitize=address,undefined)
endif()
