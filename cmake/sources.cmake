# Reads native/sources.txt, the source list binding.gyp reads too (scripts/native-sources.cjs),
# into CASTLING_SOURCES_<group> for each [group] in it.
file(STRINGS "${CMAKE_CURRENT_SOURCE_DIR}/native/sources.txt" _castling_source_lines)
set(_castling_group "")
foreach(_line IN LISTS _castling_source_lines)
  string(STRIP "${_line}" _line)
  if(_line STREQUAL "" OR _line MATCHES "^#")
    continue()
  elseif(_line MATCHES "^\\[([a-z0-9_]+)\\]$")
    set(_castling_group "${CMAKE_MATCH_1}")
    set(CASTLING_SOURCES_${_castling_group} "")
  elseif(_castling_group STREQUAL "")
    message(FATAL_ERROR "native/sources.txt: '${_line}' comes before any [group] line")
  else()
    list(APPEND CASTLING_SOURCES_${_castling_group} "${_line}")
  endif()
endforeach()
# Edits of the list reconfigure the build.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/native/sources.txt")
