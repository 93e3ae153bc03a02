"""The json-rpc.org client the blueprint's example imports (`from jsonrpc import
ServiceProxy, JSONRPCException`), for Python 3 with the standard library only:
a proxy whose attribute calls POST {"method", "params", "id"} and return
"result", raising JSONRPCException when "error" is set."""

import itertools
import json
import urllib.request

_ids = itertools.count(1)


class JSONRPCException(Exception):
    def __init__(self, error):
        Exception.__init__(self, error)
        self.error = error


class ServiceProxy(object):
    def __init__(self, url, name=None):
        self.__url = url
        self.__name = name

    def __getattr__(self, name):
        if self.__name is not None:
            name = "%s.%s" % (self.__name, name)
        return ServiceProxy(self.__url, name)

    def __call__(self, *args):
        body = json.dumps({"method": self.__name, "params": args, "id": next(_ids)})
        request = urllib.request.Request(
            self.__url, data=body.encode("utf-8"), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            answer = json.loads(reply.read().decode("utf-8"))
        if answer.get("error") is not None:
            raise JSONRPCException(answer["error"])
        return answer["result"]
