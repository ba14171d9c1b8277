"""clipdeploy.latency — runtimes that load exported artifacts, parity figures, latency reports.

    from clipdeploy.latency.coreml_ref import load_program, verify_mlpackage
    prog = load_program("out/mobileclip_s0/coreml-fp16/text_encoder.mlpackage")
    emb = prog.run({"text": ids[:1]})["embedding"]     # Core ML reference interpreter, any OS
"""
