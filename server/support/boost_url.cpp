// Compiles Boost.URL into the service: Boost 1.81 in Debian ships Boost.URL as headers only, and
// this is the one translation unit that includes its sources (hence BOOST_URL_NO_LIB).
#include <boost/url/src.hpp>
