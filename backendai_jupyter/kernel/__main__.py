from ipykernel.kernelapp import IPKernelApp

from .kernel import BackendAIKernel

IPKernelApp.launch_instance(kernel_class=BackendAIKernel)
