// Boost.URL 1.81 ships no compiled library in Debian: this one translation unit compiles it in.
#include <boost/url/src.hpp>
