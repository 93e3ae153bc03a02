"""The blueprint's example client (seeds/000, "Example code"), in Python 3: the
same calls, with its `result` slip fixed and the server's address as an
argument. It prints what it got, one fact per line, for tests/api.rs."""

import sys

from jsonrpc import ServiceProxy, JSONRPCException

url = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8000/sahana/admin/call/jsonrpc"
s = ServiceProxy(url)
try:
    nicedbdump = s.getdata("machinename12345", "email@lums.edu.pk", "myPassword")
    if type(nicedbdump) == str:
        # it means there is an error, now result has error message
        print("getdata error: " + nicedbdump)
        sys.exit(1)
    else:
        # result is list type for sure, result is nicedbdump type
        print("getdata tables %d rows %d" % (len(nicedbdump), sum(len(t[2]) for t in nicedbdump)))

    putit = s.putdata("machinename12345", "email@lums.edu.pk", "myPassword", nicedbdump)
    if putit == True:
        # data successfully sent, parsed and processed at server (but in this case no
        # data will be added because you just queried data and sent it back)
        print("putdata True")
    else:
        # its an error
        print("putdata error: %r" % (putit,))
        sys.exit(1)

    again = s.getdata("machinename12345", "email@lums.edu.pk", "myPassword")
    print("getdata again tables %d" % len(again))
except JSONRPCException as e:
    print(repr(e.error))
    sys.exit(2)
