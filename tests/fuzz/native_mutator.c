/*
 * libFuzzer's custom mutator for scripts/fuzz-native.sh: calls tests.fuzz.native.custom_mutate.
 *
 * atheris passes a custom_mutator to libFuzzer only when it links libFuzzer itself; the native
 * campaign LD_PRELOADs atheris's asan_with_fuzzer.so instead (ASan and libFuzzer in one runtime,
 * for the instrumented _wirescan.so), whose libFuzzer looks LLVMFuzzerCustomMutator up as a weak
 * symbol when it is loaded. This library, preloaded beside it, defines that symbol. It is only
 * ever called from inside atheris.Fuzz(), on the thread holding the GIL; the Python symbols
 * resolve against the interpreter's libpython at the first call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    static PyObject *mutate = NULL;
    PyGILState_STATE gil = PyGILState_Ensure();
    if (mutate == NULL) {
        PyObject *module = PyImport_ImportModule("tests.fuzz.native");
        mutate = module == NULL ? NULL : PyObject_GetAttrString(module, "custom_mutate");
        Py_XDECREF(module);
    }
    PyObject *result = mutate == NULL ? NULL
        : PyObject_CallFunction(mutate, "y#nI", (const char *)data, (Py_ssize_t)size, (Py_ssize_t)max_size, seed);
    if (result == NULL || !PyBytes_Check(result)) {
        if (result == NULL) PyErr_Print();
        fprintf(stderr, "native_mutator: tests.fuzz.native.custom_mutate failed\n");
        abort();
    }
    size_t out = (size_t)PyBytes_GET_SIZE(result);
    if (out > max_size) out = max_size;
    memcpy(data, PyBytes_AS_STRING(result), out);
    Py_DECREF(result);
    PyGILState_Release(gil);
    return out;
}
